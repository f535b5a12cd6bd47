// Runs sign.mjs on vectors.json and prints {key: value} as JSON (compared by compare.py).
import { readFileSync } from 'node:fs';
import { signTicket, signSystemMessage, verifyWebhook } from './sign.mjs';

const v = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const out = {};
for (const t of v.tickets) {
  const { ticket, signature } = signTicket(t.secret, t.fields);
  out[`ticket/${t.name}/ticket`] = ticket;
  out[`ticket/${t.name}/signature`] = signature;
}
for (const m of v.systemMessages) {
  out[`sysmsg/${m.name}/signature`] = signSystemMessage(m.secret, m).signature;
}
for (const c of v.webhook.cases) {
  out[`webhook/${c.name}`] = verifyWebhook(v.webhook.secret, c.header, c.body, c.now, v.webhook.toleranceSeconds);
}
console.log(JSON.stringify(out));
