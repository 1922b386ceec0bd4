// Copy-paste examples with this relay's real base URL; the key is read from an environment variable
// so the snippets themselves hold no secret.
import { type Html, html } from '../html.js';

export const ENV_VAR = 'GUILDGATE_API_KEY';

function snippets(baseUrl: string, model: string): Array<{ id: string; title: string; code: string }> {
  return [
    {
      id: 'snippet-curl',
      title: 'curl',
      code: `curl ${baseUrl}/chat/completions \\
  -H "Authorization: Bearer $${ENV_VAR}" -H "Content-Type: application/json" \\
  -d '{"model": "${model}", "messages": [{"role": "user", "content": "Hello!"}]}'`,
    },
    {
      id: 'snippet-python',
      title: 'Python (pip install openai)',
      code: `import os
from openai import OpenAI

client = OpenAI(base_url="${baseUrl}", api_key=os.environ["${ENV_VAR}"])
r = client.chat.completions.create(model="${model}", messages=[{"role": "user", "content": "Hello!"}])
print(r.choices[0].message.content)`,
    },
    {
      id: 'snippet-js',
      title: 'JavaScript (npm install openai)',
      code: `import OpenAI from 'openai';

const client = new OpenAI({ baseURL: '${baseUrl}', apiKey: process.env.${ENV_VAR} });
const r = await client.chat.completions.create({ model: '${model}', messages: [{ role: 'user', content: 'Hello!' }] });
console.log(r.choices[0].message.content);`,
    },
  ];
}

export function quickStart(baseUrl: string, model: string): Html {
  return html`<p>Base URL: <code>${baseUrl}</code>. Save your key as <code>${ENV_VAR}</code>; the examples read it from there.</p>
${snippets(baseUrl, model).map(
  (s) => html`<h3>${s.title}</h3>
<pre><code id="${s.id}">${s.code}</code></pre>
<p><button type="button" class="secondary" data-copy="${s.id}" hidden>Copy ${s.title.split(' ')[0]} example</button></p>`,
)}`;
}
