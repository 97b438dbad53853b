// The recording of a call: where to fetch it, and what is known of it once fetched.

/** The placeholder WAVOIP_RECORDING_URL_TEMPLATE must contain. */
export const CALL_ID_PLACEHOLDER = '{whatsapp_call_id}';

/** The storage URL of a call's recording, for a READY without `record_url` and for polling. */
export function buildRecordingUrl(template: string, whatsappCallId: string): string {
  return template.replaceAll(CALL_ID_PLACEHOLDER, encodeURIComponent(whatsappCallId));
}

/** What is known of a recording's bytes once it is downloaded and checked. */
export interface RecordingFacts {
  size: number;
  /** Hex. */
  sha256: string;
  contentType: string;
  /** As named by music-metadata, e.g. 'Ogg', 'MPEG', 'WAVE'; null when unknown. */
  container: string | null;
  codec: string | null;
  durationSeconds: number | null;
}
