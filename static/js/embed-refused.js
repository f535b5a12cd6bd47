// @ts-check
// embed-refused.js — the page `GET /embed` shows in the host's frame when it refuses a ticket
// (templates/embed-refused.stpl). It tells the host page why, over the same channel as the room:
// one `error` event {code: 'ticket', reason, message, field?}, posted only to the ticket's origin (which
// the server checked against the integrator's allowedOrigins; the page's CSP lets only that origin
// frame it), never '*'; and a `resize` with the height the message needs. It sends nothing else
// and reads nothing but the page's own fixed text.

/** @param {unknown} value */
function isOrigin(value) {
  try {
    return typeof value === 'string' && new URL(value).origin === value;
  } catch {
    return false;
  }
}

function framed() {
  try {
    return window.parent !== window;
  } catch {
    return true;
  }
}

const hostOrigin = /** @type {string} */ (document.body.dataset.hostOrigin); // checked with isOrigin before use
const reason = document.body.dataset.reason || 'refused';
const field = document.body.dataset.field || undefined; // the ticket field at fault, for invalid_field
const message = document.getElementById('refused-message')?.textContent || 'The chat could not be opened.';

/**
 * @param {string} type
 * @param {object} data
 */
function post(type, data) {
  try {
    window.parent.postMessage({ ...data, source: 'chats3', type }, hostOrigin);
  } catch {
    /* parent gone */
  }
}

if (framed() && isOrigin(hostOrigin)) {
  post('error', field ? { code: 'ticket', reason, message, field } : { code: 'ticket', reason, message });
  const card = document.getElementById('refused');
  const margins = () => {
    const cs = getComputedStyle(document.body);
    return parseFloat(cs.paddingTop) + parseFloat(cs.paddingBottom) + parseFloat(cs.marginTop) + parseFloat(cs.marginBottom);
  };
  if (card) {
    // Again whenever the card's size changes (the stylesheet may apply after this runs).
    const report = () => post('resize', { height: Math.ceil(card.offsetHeight + margins()) });
    report();
    new ResizeObserver(report).observe(card);
  }
}
