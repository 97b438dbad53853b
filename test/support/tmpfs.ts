import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/**
 * Small tmpfs mounts for the storage-fault tests: a disk that fills up or turns read-only for
 * real, so the kernel itself answers ENOSPC and EROFS. Needs root (CAP_SYS_ADMIN).
 */
export interface Tmpfs {
  dir: string;
  /** `mount -o remount,<options>`: `ro`, `rw`, `size=128m`. */
  remount(options: string): void;
  /** Bytes an unprivileged writer may still use, as statfs reports them. */
  free(): number;
  /** Unmounts (lazily if something still holds it open) and removes the mount point. */
  unmount(): void;
}

/**
 * Why the tmpfs tests cannot run here, or undefined when they can. Where they cannot, they are
 * skipped with a warning; CI sets TEST_REQUIRE_TMPFS=1 so that this fails the run instead, as
 * TEST_REQUIRE_POSTGRES does for PostgreSQL.
 */
export function tmpfsUnavailableReason(): string | undefined {
  const reason = probeTmpfs();
  if (reason === undefined) return undefined;
  if (process.env.TEST_REQUIRE_TMPFS === '1') {
    throw new Error(`TEST_REQUIRE_TMPFS=1 but the disk-full and read-only tests cannot mount a tmpfs: ${reason}. Run the tests as root (CAP_SYS_ADMIN).`);
  }
  console.warn(`\n⚠ Cannot mount a tmpfs (${reason}): the disk-full and read-only tests are skipped. Run the tests as root to include them.\n`);
  return reason;
}

function probeTmpfs(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root to mount a tmpfs';
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tmpfs-probe-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', dir], { stdio: 'pipe' });
    execFileSync('umount', [dir], { stdio: 'pipe' });
    return undefined;
  } catch (error) {
    return `mounting a tmpfs failed: ${String((error as { stderr?: unknown }).stderr ?? error).trim()}`;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Mounts a tmpfs of `size` (e.g. `72m`) on `dir`, which must exist and be empty. */
export function mountTmpfs(dir: string, size: string): Tmpfs {
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0755`, 'tmpfs', dir], { stdio: 'pipe' });
  let mounted = true;
  return {
    dir,
    remount(options) {
      execFileSync('mount', ['-o', `remount,${options}`, dir], { stdio: 'pipe' });
    },
    free() {
      const stats = fs.statfsSync(dir);
      return stats.bavail * stats.bsize;
    },
    unmount() {
      if (!mounted) return;
      try {
        execFileSync('umount', [dir], { stdio: 'pipe' });
      } catch {
        execFileSync('umount', ['-l', dir], { stdio: 'pipe' });
      }
      mounted = false;
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
