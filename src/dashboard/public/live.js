/**
 * One EventSource for the whole page (GET /api/live), shared by the views: `calls` events carry
 * changed calls as the list shows them; `resync` means changes may have been missed.
 */

const listeners = new Set();
let source = null;
let reconnectTimer;
/** The browser reconnects by itself after a dropped stream; after a refusal it gives up, and so we try again later. */
const RECONNECT_AFTER_REFUSAL_MS = 15_000;

export function onLive(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export function startLive() {
  if (source !== null) return;
  clearTimeout(reconnectTimer);
  source = new EventSource('/api/live');
  source.addEventListener('calls', (event) => {
    let calls;
    try {
      calls = JSON.parse(event.data).calls;
    } catch {
      return;
    }
    if (Array.isArray(calls)) emit({ type: 'calls', calls });
  });
  source.addEventListener('resync', () => emit({ type: 'resync' }));
  // The stream says only what changes while it is open: whatever changed before it opened (the
  // first time, while the page read its list in parallel; later, while it was down) is read again.
  source.addEventListener('open', () => emit({ type: 'resync' }));
  source.addEventListener('error', () => {
    if (source?.readyState !== EventSource.CLOSED) return;
    source = null;
    reconnectTimer = setTimeout(startLive, RECONNECT_AFTER_REFUSAL_MS);
  });
}

export function stopLive() {
  clearTimeout(reconnectTimer);
  source?.close();
  source = null;
}

function emit(event) {
  for (const listener of listeners) {
    try {
      listener(event);
    } catch (error) {
      console.error(error);
    }
  }
}
