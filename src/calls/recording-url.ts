/** The placeholder WAVOIP_RECORDING_URL_TEMPLATE must contain. */
export const CALL_ID_PLACEHOLDER = '{whatsapp_call_id}';

/** The storage URL of a call's recording, for a READY without `record_url` and for polling. */
export function buildRecordingUrl(template: string, whatsappCallId: string): string {
  return template.replaceAll(CALL_ID_PLACEHOLDER, encodeURIComponent(whatsappCallId));
}
