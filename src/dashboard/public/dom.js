/**
 * Builds elements from data without ever parsing it as HTML: attributes are set one by one and
 * every child that is not a node becomes a text node. A hostile webhook payload stays text.
 */
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'class') element.className = value;
    else if (name.startsWith('on') && typeof value === 'function') element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, value === true ? '' : String(value));
  }
  append(element, children);
  return element;
}

export function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
}

/** Empties `element` and fills it with `children`. */
export function fill(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

/** A definition list from [label, value] pairs; pairs with no value are left out. */
export function facts(pairs, className = 'facts') {
  return h('dl', { class: className }, pairs.filter(([, value]) => value !== null && value !== undefined && value !== '').map(([label, value]) => h('div', {}, h('dt', {}, label), h('dd', {}, value))));
}

/** Runs `action` once after a call, then at most once per `intervalMs` however often it is called. */
export function throttle(action, intervalMs) {
  let timer;
  let lastRun = -Infinity;
  const throttled = () => {
    if (timer !== undefined) return;
    timer = setTimeout(() => {
      timer = undefined;
      lastRun = Date.now();
      action();
    }, Math.max(0, lastRun + intervalMs - Date.now()));
  };
  throttled.cancel = () => {
    clearTimeout(timer);
    timer = undefined;
  };
  return throttled;
}
