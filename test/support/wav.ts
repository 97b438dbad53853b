import fs from 'node:fs';

const WAV_HEADER_BYTES = 44;

/**
 * The 44-byte header of a canonical PCM WAV file `totalBytes` long in all (16 kHz, mono, 16-bit):
 * followed by `totalBytes - 44` bytes of samples, it is a file the service sniffs and parses as audio.
 */
function wavHeader(totalBytes: number): Buffer {
  const header = Buffer.alloc(WAV_HEADER_BYTES);
  header.write('RIFF', 0);
  header.writeUInt32LE(totalBytes - 8, 4);
  header.write('WAVEfmt ', 8);
  header.writeUInt32LE(16, 16);
  header.writeUInt16LE(1, 20); // PCM
  header.writeUInt16LE(1, 22); // mono
  header.writeUInt32LE(16_000, 24);
  header.writeUInt32LE(32_000, 28);
  header.writeUInt16LE(2, 32);
  header.writeUInt16LE(16, 34);
  header.write('data', 36);
  header.writeUInt32LE(totalBytes - WAV_HEADER_BYTES, 40);
  return header;
}

/** A WAV recording of `totalBytes` bytes in memory: a real header followed by silence. */
export function silentWav(totalBytes: number): Buffer {
  return Buffer.concat([wavHeader(totalBytes), Buffer.alloc(totalBytes - WAV_HEADER_BYTES)]);
}

/** A WAV file of `totalBytes` bytes: a real header followed by silence, written sparse so it is quick to make. */
export function writeWavFile(file: string, totalBytes: number): void {
  const fd = fs.openSync(file, 'w');
  try {
    fs.writeSync(fd, wavHeader(totalBytes));
    fs.ftruncateSync(fd, totalBytes);
  } finally {
    fs.closeSync(fd);
  }
}
