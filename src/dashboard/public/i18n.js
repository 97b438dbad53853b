import en from './i18n/en.js';
import ptBR from './i18n/pt-BR.js';

const DICTIONARIES = { en, 'pt-BR': ptBR };
export const LOCALES = [
  { code: 'en', name: 'English' },
  { code: 'pt-BR', name: 'Português (Brasil)' },
];
const STORAGE_KEY = 'wavoip-recordings.locale';

/** The language chosen with the switch, else the first of the browser's languages we have, else English. */
function initialLocale() {
  const stored = readStored();
  if (stored in DICTIONARIES) return stored;
  for (const language of navigator.languages ?? [navigator.language]) {
    const lower = String(language).toLowerCase();
    if (lower.startsWith('pt')) return 'pt-BR';
    if (lower.startsWith('en')) return 'en';
  }
  return 'en';
}

function readStored() {
  try {
    return localStorage.getItem(STORAGE_KEY) ?? '';
  } catch {
    return ''; // storage blocked (private mode, policy): the browser's language decides
  }
}

let locale = initialLocale();
document.documentElement.lang = locale;

export const currentLocale = () => locale;

export function setLocale(code) {
  if (!(code in DICTIONARIES)) return;
  locale = code;
  document.documentElement.lang = code;
  try {
    localStorage.setItem(STORAGE_KEY, code);
  } catch {
    // not remembered; still switched for this page
  }
}

/** The text for `key` in the current language, `{name}` filled from `values`. */
export function t(key, values = {}) {
  const text = DICTIONARIES[locale][key] ?? en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(values[name] ?? ''));
}
