import { describe, expect, it } from 'vitest';
import { recordingMediaTypeFor, servedRecordingMediaType } from '../../src/calls/recording-media-type.ts';

const KEY = 'CALL-0123456789abcdef-0123456789abcdef';

describe('servedRecordingMediaType', () => {
  it.each([
    // What this release stores: served as it is.
    ['audio/ogg', `${KEY}.opus`, 'audio/ogg'],
    ['audio/mpeg', `${KEY}.mp3`, 'audio/mpeg'],
    // What older releases stored: the bare type when it is one of the list, parameters dropped.
    ['audio/ogg; codecs=opus', `${KEY}.opus`, 'audio/ogg'],
    ['audio/ogg;,text/html', `${KEY}.opus`, 'audio/ogg'],
    ['AUDIO/MPEG ; charset=x', `${KEY}.mp3`, 'audio/mpeg'],
    // Otherwise the key's extension, which came from the sniffed bytes.
    ['text/html; charset=utf-8', `${KEY}.opus`, 'audio/ogg'],
    ['audio/ogg , text/html', `${KEY}.wav`, 'audio/wav'],
    ['video/mp4', `${KEY}.mp4`, 'audio/mp4'],
    ['audio/x-wav', `${KEY}.wav`, 'audio/wav'],
    [null, `${KEY}.webm`, 'audio/webm'],
    // Neither: bytes a browser will not render.
    ['text/html', `${KEY}.html`, 'application/octet-stream'],
    ['text/html', `${KEY}.constructor`, 'application/octet-stream'],
    ['text/html', 'no-extension', 'application/octet-stream'],
  ])('serves a row storing %j under %s as %s', (stored, key, served) => {
    expect(servedRecordingMediaType(stored, key)).toBe(served);
  });
});

describe('recordingMediaTypeFor', () => {
  it('gives a bare audio type for every format it knows, and nothing for others', () => {
    for (const extension of ['mp3', 'opus', 'ogg', 'ogx', 'wav', 'flac', 'm4a', 'mp4', 'aac', 'webm', 'amr']) {
      expect(recordingMediaTypeFor(extension)).toMatch(/^audio\/[a-z0-9.+-]+$/);
    }
    for (const extension of ['html', 'svg', 'js', 'mkv', 'mov', '__proto__', 'toString']) {
      expect(recordingMediaTypeFor(extension)).toBeUndefined();
    }
  });
});
