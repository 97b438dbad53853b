import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatDuration, formatWait, parseDuration, parseSize } from '../src/units.ts';

const UNITS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

describe('parseDuration', () => {
  it.each<[string, number]>([
    ['500ms', 500],
    ['1ms', 1],
    ['0ms', 0],
    ['30s', 30_000],
    ['0s', 0],
    ['60s', 60_000],
    ['5m', 300_000],
    ['30m', 1_800_000],
    ['4h', 14_400_000],
    ['1d', 86_400_000],
    ['30d', 2_592_000_000],
    ['1.5h', 5_400_000],
    ['0.5s', 500],
    ['2.5m', 150_000],
    ['  30s  ', 30_000],
    ['\t4h\n', 14_400_000],
    ['0030s', 30_000],
  ])('reads %j as %i ms', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each([
    '30', '0', '', '   ', '5 m', '30 s', '-1s', '+1s', '1w', '1y', '1M', '30S', '4H', '500MS', 's', 'ms', 'm',
    '.5s', '5.s', '1e3s', '1e3', '30sec', '30secs', '5min', '4hours', '1d2h', '30s30s', '1h30m', 'NaN', 'Infinity', 'Infinitys',
    '0x10s', '1,5h', '1_000ms', 'thirty seconds', '30s ago', '٣s',
  ])('refuses %j', (text) => {
    expect(parseDuration(text)).toBeUndefined();
  });

  it('reads any whole number of any unit', () => {
    fc.assert(
      fc.property(fc.nat({ max: 1_000_000 }), fc.constantFrom(...(Object.keys(UNITS) as Array<keyof typeof UNITS>)), (count, unit) => {
        expect(parseDuration(`${count}${unit}`)).toBe(count * UNITS[unit]);
      }),
    );
  });

  it('refuses every text without a unit', () => {
    fc.assert(
      fc.property(fc.nat(), (count) => {
        expect(parseDuration(String(count))).toBeUndefined();
      }),
    );
  });
});

describe('formatDuration', () => {
  it.each<[number, string]>([
    [0, '0ms'],
    [1, '1ms'],
    [500, '500ms'],
    [999, '999ms'],
    [1_000, '1s'],
    [1_500, '1500ms'],
    [30_000, '30s'],
    [90_000, '90s'],
    [60_000, '1m'],
    [300_000, '5m'],
    [1_800_000, '30m'],
    [5_400_000, '90m'],
    [3_600_000, '1h'],
    [14_400_000, '4h'],
    [86_400_000, '1d'],
    [2_592_000_000, '30d'],
    [90_000_000, '25h'],
  ])('writes %i ms as %s', (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });

  it('round-trips every whole number of milliseconds through parseDuration', () => {
    fc.assert(
      fc.property(fc.oneof(fc.maxSafeNat(), fc.nat({ max: 10 * 86_400_000 }), fc.nat({ max: 1_000 }).map((n) => n * 60_000)), (ms) => {
        expect(parseDuration(formatDuration(ms))).toBe(ms);
      }),
      { numRuns: 2000 },
    );
  });

  it('uses the largest unit that divides the value exactly', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 100_000 }), fc.constantFrom(...(Object.keys(UNITS) as Array<keyof typeof UNITS>)), (n, unit) => {
        const text = formatDuration(n * UNITS[unit]);
        const match = /^(\d+)(ms|s|m|h|d)$/.exec(text);
        expect(match).not.toBeNull();
        const used = match![2] as keyof typeof UNITS;
        expect(UNITS[used]).toBeGreaterThanOrEqual(UNITS[unit]);
        const bigger = Object.values(UNITS).filter((size) => size > UNITS[used]);
        for (const size of bigger) expect((n * UNITS[unit]) % size).not.toBe(0);
      }),
    );
  });
});

describe('parseSize', () => {
  it.each<[string, number]>([
    ['1048576', 1_048_576],
    ['0', 0],
    ['1', 1],
    ['1B', 1],
    ['512B', 512],
    ['64KiB', 65_536],
    ['1KiB', 1_024],
    ['512MiB', 536_870_912],
    ['1MiB', 1_048_576],
    ['2GiB', 2_147_483_648],
    [' 64KiB ', 65_536],
  ])('reads %j as %i bytes', (text, bytes) => {
    expect(parseSize(text)).toBe(bytes);
  });

  it.each([
    '', ' ', '1.5MiB', '0.5GiB', '512MB', '512mb', '512mib', '512 MiB', '64kib', '64KB', '64K', '1G', '-1', '+1', '1e6', '0x10',
    'KiB', 'MiB', 'big', '1,024', '1_024', '1TiB', '512MiB512MiB',
  ])('refuses %j', (text) => {
    expect(parseSize(text)).toBeUndefined();
  });

  it('reads any whole number of any unit', () => {
    const sizes = { B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3 } as const;
    fc.assert(
      fc.property(fc.nat({ max: 1_000_000 }), fc.constantFrom(...(Object.keys(sizes) as Array<keyof typeof sizes>)), (count, unit) => {
        expect(parseSize(`${count}${unit}`)).toBe(count * sizes[unit]);
        if (unit === 'B') expect(parseSize(String(count))).toBe(count);
      }),
    );
  });
});

describe('formatWait', () => {
  it.each([
    [0, '0ms'],
    [400, '400ms'],
    [999, '999ms'],
    [1_000, '1s'],
    [2_450, '2.5s'],
    [71_000, '1.2m'],
    [30 * 60_000, '30m'],
    [90 * 60_000, '1.5h'],
  ])('%i ms → %s', (ms, text) => {
    expect(formatWait(ms)).toBe(text);
  });
});
