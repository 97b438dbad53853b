/**
 * The only media types a recording is ever stored or served with, by the extension file-type
 * gives its format (which is also the extension of its storage key). A fixed list, so that no
 * text an upstream sent (a `Content-Type: audio/ogg;,text/html`, say) ever reaches a browser.
 * Containers file-type names as video or application carry the call's audio here.
 */
const MEDIA_TYPE_BY_EXTENSION: ReadonlyMap<string, string> = new Map([
  ['mp3', 'audio/mpeg'], ['mp2', 'audio/mpeg'], ['mp1', 'audio/mpeg'],
  ['ogg', 'audio/ogg'], ['opus', 'audio/ogg'], ['oga', 'audio/ogg'], ['spx', 'audio/ogg'],
  ['ogx', 'audio/ogg'], ['ogv', 'audio/ogg'], ['ogm', 'audio/ogg'],
  ['wav', 'audio/wav'],
  ['flac', 'audio/flac'],
  ['m4a', 'audio/mp4'], ['m4b', 'audio/mp4'], ['f4a', 'audio/mp4'], ['f4b', 'audio/mp4'],
  ['mp4', 'audio/mp4'], ['m4p', 'audio/mp4'], ['f4v', 'audio/mp4'], ['f4p', 'audio/mp4'],
  ['aac', 'audio/aac'],
  ['webm', 'audio/webm'],
  ['amr', 'audio/amr'],
  ['aif', 'audio/aiff'],
  ['ac3', 'audio/vnd.dolby.dd-raw'],
  ['ape', 'audio/ape'],
  ['asf', 'audio/x-ms-asf'],
  ['dsf', 'audio/x-dsf'],
  ['mid', 'audio/midi'],
  ['mpc', 'audio/x-musepack'],
  ['qcp', 'audio/qcelp'],
  ['wv', 'audio/wavpack'],
  ['voc', 'audio/x-voc'],
  ['it', 'audio/x-it'], ['s3m', 'audio/x-s3m'], ['xm', 'audio/x-xm'],
]);

const RECORDING_MEDIA_TYPES: ReadonlySet<string> = new Set(MEDIA_TYPE_BY_EXTENSION.values());

/** What a client gets when neither the stored type nor the key names a format of the list. */
const UNKNOWN_RECORDING_MEDIA_TYPE = 'application/octet-stream';

/** The media type (`type/subtype`, no parameters) for a format file-type detected; undefined if not in the list. */
export function recordingMediaTypeFor(extension: string): string | undefined {
  return MEDIA_TYPE_BY_EXTENSION.get(extension.toLowerCase());
}

/**
 * The Content-Type to serve a stored recording with. Rows written by older releases may hold an
 * upstream's header verbatim, so the stored value counts only when its bare type is in the list;
 * otherwise the key's extension (chosen from the sniffed bytes) decides.
 */
export function servedRecordingMediaType(storedContentType: string | null, key: string): string {
  const stored = (storedContentType?.split(';')[0] ?? '').trim().toLowerCase();
  if (RECORDING_MEDIA_TYPES.has(stored)) return stored;
  const dot = key.lastIndexOf('.');
  return (dot === -1 ? undefined : recordingMediaTypeFor(key.slice(dot + 1))) ?? UNKNOWN_RECORDING_MEDIA_TYPE;
}
