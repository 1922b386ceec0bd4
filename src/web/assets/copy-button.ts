// Copy buttons (served as /assets/copy.js; CSP allows no inline scripts). A `<button data-copy="ID"
// hidden>` copies the value or text of #ID; without JavaScript the buttons stay hidden and the text
// stays selectable.
export const COPY_JS = `
'use strict';
const status = document.getElementById('copy-status');
for (const button of document.querySelectorAll('button[data-copy]')) {
  const label = button.textContent;
  button.hidden = false;
  button.addEventListener('click', async () => {
    const target = document.getElementById(button.dataset.copy);
    if (!target) return;
    const text = 'value' in target ? target.value : target.textContent;
    let done = false;
    try {
      await navigator.clipboard.writeText(text);
      done = true;
    } catch {
      if ('select' in target) {
        target.select();
        done = document.execCommand('copy');
      }
    }
    button.textContent = done ? 'Copied' : 'Select and copy it by hand';
    if (status) status.textContent = button.textContent;
    setTimeout(() => { button.textContent = label; }, 2500);
  });
}
`;
