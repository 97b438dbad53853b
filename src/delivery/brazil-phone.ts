/**
 * Brazil gave its mobile numbers a ninth digit (a leading 9) between 2012 and 2016, but WhatsApp
 * still names many older accounts by the 12-digit form (55 + area code + 8 digits), and
 * Chatwoot's WhatsApp channel stores the 13-digit form (brazil_phone_normalizer.rb). A contact may
 * therefore sit in Chatwoot under either form: these are the forms to look for.
 *
 * Only mobile numbers ever had two forms: an 8-digit subscriber number starting with 6–9 is a
 * mobile (2–5 are landlines), so a landline never gets a ninth digit added (that would be some
 * other person's mobile), and a 9-digit mobile whose last eight start with 2–5 never had an old form.
 */
const BRAZIL = /^\+55([1-9]{2})(\d{8,9})$/;
const OLD_MOBILE_SUBSCRIBER = /^[6-9]\d{7}$/;

/**
 * Every form under which `e164` (`+5511987654321`) may be stored, the given one first. A number
 * that is not a Brazilian mobile comes back alone.
 */
export function brazilianMobileVariants(e164: string): string[] {
  const match = BRAZIL.exec(e164);
  if (!match) return [e164];
  const [, areaCode, subscriber] = match as unknown as [string, string, string];
  if (subscriber.length === 8) {
    return OLD_MOBILE_SUBSCRIBER.test(subscriber) ? [e164, `+55${areaCode}9${subscriber}`] : [e164];
  }
  const withoutNinth = subscriber.slice(1);
  return subscriber.startsWith('9') && OLD_MOBILE_SUBSCRIBER.test(withoutNinth) ? [e164, `+55${areaCode}${withoutNinth}`] : [e164];
}
