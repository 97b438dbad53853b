/**
 * Phone numbers as WaVoIP sends them (digits only, country code first: "5566999050312") turned
 * into E.164 ("+5566999050312"). Hand-written rather than libphonenumber: the rule needed is
 * "digits already carry their country code", which needs no numbering-plan metadata, and
 * guessing a country for a national number is exactly what must not happen.
 *
 * The rule:
 * - formatting is dropped: spaces, '-', '.', '(', ')', '/', and a leading '+';
 * - a WhatsApp address keeps its number: "5511911112222@s.whatsapp.net", "…:12@s.whatsapp.net"
 *   (a device suffix), "…@c.us"; any other address ("…@lid", a linked id) is no phone number;
 * - what is left must be 7 to 15 digits, the first not 0 (E.164 has at most 15 digits, and no
 *   country code starts with 0): a leading 0 is a national or international prefix whose country
 *   cannot be known, so such a number is not normalised (null), and the raw text stays the record.
 */
const WHATSAPP_ADDRESS = /^([^@:]+)(?::\d+)?@(?:s\.whatsapp\.net|c\.us)$/i;
const FORMATTING = /[\s\-.()/]/g;
const E164_DIGITS = /^[1-9]\d{6,14}$/;

export function toE164(raw: string | null | undefined): string | null {
  if (raw === null || raw === undefined) return null;
  let text = raw.trim();
  if (text.includes('@')) {
    const address = WHATSAPP_ADDRESS.exec(text);
    if (address === null) return null;
    text = address[1] as string;
  }
  const digits = text.replace(FORMATTING, '').replace(/^\+/, '');
  return E164_DIGITS.test(digits) ? `+${digits}` : null;
}
