import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import semver from 'semver';
import { describe, expect, it } from 'vitest';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

interface LockEntry {
  version?: string;
  engines?: { node?: string } | string[];
}

const lock = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry> };
const manifest = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { engines: { node: string } };
const ourRange = manifest.engines.node;

/**
 * The lock file's packages that npm installs on this machine, with the Node range each declares.
 * Optional packages for other platforms (esbuild's and rolldown's binaries for other CPUs, the
 * wasm32 fallback) are in the lock file but never installed here, and npm checks no engine for
 * them.
 */
function installedEngines(): { name: string; range: string }[] {
  return Object.entries(lock.packages).flatMap(([location, entry]) => {
    if (location === '' || !fs.existsSync(path.join(REPO_ROOT, location))) return [];
    const range = Array.isArray(entry.engines) ? undefined : entry.engines?.node;
    return range === undefined ? [] : [{ name: `${location.replace(/^.*node_modules\//, '')}@${entry.version}`, range }];
  });
}

describe('Node versions', () => {
  it('package.json engines names exactly the release lines the README names: 20, 22 and 24', () => {
    for (const major of [20, 22, 24]) expect(semver.intersects(ourRange, `${major}.x`), `Node ${major}`).toBe(true);
    for (const major of [18, 19, 21, 23, 25]) expect(semver.intersects(ourRange, `${major}.x`), `Node ${major}`).toBe(false);
  });

  // npm prints EBADENGINE when the running Node is outside a package's engines.node; so every
  // Node that our engines admits must be inside every installed package's range.
  it('every Node version package.json admits is admitted by every installed package (no EBADENGINE)', () => {
    const packages = installedEngines();
    expect(packages.length).toBeGreaterThan(20);
    const excluding = packages.filter(({ range }) => !semver.subset(ourRange, range)).map(({ name, range }) => `${name} wants node ${range}`);
    expect(excluding).toEqual([]);
  });
});
