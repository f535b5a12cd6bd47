// The host page: asks its own server for a signed ticket, mounts the chat, shows its events.
const params = new URLSearchParams(location.search);
const log = document.getElementById('log');
const events = []; // every event the SDK delivered (tests read window.hostDemo.events)

function note(text, cls) {
  const li = document.createElement('li');
  li.textContent = text;
  if (cls) li.className = cls;
  log.prepend(li);
}

function describe(e) {
  switch (e.type) {
    case 'ready': return `ready: ${e.displayName} in ${e.conversationId}`;
    case 'unread': return `unread: ${e.count}`;
    case 'message': return `message: ${e.kind} from ${e.mine ? 'me' : e.senderDisplayName || 'someone'}`;
    case 'call': return `call: ${e.event}, ${e.participants} in the call`;
    case 'resize': return `resize: ${e.height}px`;
    case 'error': return `error: ${e.code}${e.reason ? ` (${e.reason})` : ''}: ${e.message}`;
    default: return e.type;
  }
}

async function start() {
  const q = new URLSearchParams();
  for (const k of ['user', 'name', 'conversation']) if (params.get(k)) q.set(k, params.get(k));
  const res = await fetch(`/api/ticket?${q}`, { method: 'POST' });
  if (!res.ok) throw new Error(`ticket endpoint answered ${res.status}`);
  const { baseUrl, ticket, signature } = await res.json();
  document.getElementById('who').textContent = `Signed in as ${params.get('name') || 'Guest'}`;

  const chat = window.Chats3.mount(document.getElementById('chat'), {
    baseUrl,
    ticket,
    signature,
    theme: params.get('theme') || 'auto',
    height: 560,
    title: 'Support chat',
    // Controls shown inside the frame (all hidden by default, as in the original service);
    // this page has its own Leave button, which calls chat.leave().
    features: { call: true, record: true, leave: false },
    onEvent: (e) => {
      events.push(e);
      note(describe(e), e.type === 'error' ? 'error' : '');
    },
  });
  chat.on('unread', (e) => {
    document.getElementById('unread').textContent = `${e.count} unread`;
  });
  for (const b of document.querySelectorAll('[data-theme]')) b.addEventListener('click', () => chat.setTheme(b.dataset.theme));
  document.getElementById('focus').addEventListener('click', () => chat.focus());
  document.getElementById('leave').addEventListener('click', () => chat.leave());
  window.hostDemo = { chat, events };
}

start().catch((err) => note(`Could not start the chat: ${err.message}`, 'error'));
