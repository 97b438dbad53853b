// The recording of a call: where to fetch it, and what is known of it once fetched.

/** The placeholder WAVOIP_RECORDING_URL_TEMPLATE must contain. */
export const CALL_ID_PLACEHOLDER = '{whatsapp_call_id}';

/** The storage URL of a call's recording, for a READY without `record_url` and for polling. */
export function buildRecordingUrl(template: string, whatsappCallId: string): string {
  return template.replaceAll(CALL_ID_PLACEHOLDER, encodeURIComponent(whatsappCallId));
}

interface AttemptUrl {
  url: string;
  /** Whether this attempt takes the hinted URL. */
  hinted: boolean;
  /** More than one URL is being tried: one failing for good does not end the wait. */
  alternating: boolean;
}

/**
 * The URL one attempt fetches (`attempt` counts from 1). READY's `record_url` is the recording's:
 * always that. Otherwise the template URL, and when a hint (a `record_url` without READY) names
 * another place that the allow-list accepts, the hint on odd attempts and the template on even
 * ones: the hint first, as the sender's own word, without ever giving up the documented place.
 */
export function recordingUrlForAttempt(input: {
  recordUrl: string | null;
  hintedUrl: string | null;
  templateUrl: string;
  hintAllowed: boolean;
  attempt: number;
}): AttemptUrl {
  const { recordUrl, hintedUrl, templateUrl, hintAllowed, attempt } = input;
  if (recordUrl !== null) return { url: recordUrl, hinted: false, alternating: false };
  if (hintedUrl === null || !hintAllowed || hintedUrl === templateUrl) return { url: templateUrl, hinted: false, alternating: false };
  const hinted = attempt % 2 === 1;
  return { url: hinted ? hintedUrl : templateUrl, hinted, alternating: true };
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
