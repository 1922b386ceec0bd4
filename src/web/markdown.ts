// Markdown for the operator-editable pages. Raw HTML in the source is shown as text, not inserted:
// the pages stay safe to render whoever edited the file.
import { Marked } from 'marked';
import { escapeHtml, type Html, trusted } from './html.js';

const marked = new Marked({
  gfm: true,
  async: false,
  renderer: {
    html: ({ text }) => escapeHtml(text),
  },
});

export function renderMarkdown(source: string): Html {
  return trusted(marked.parse(source, { async: false }));
}
