import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import helmet from '@fastify/helmet';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance } from 'fastify';

const PUBLIC_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'public');
/** The page shell: the same document for every page; the browser draws the page from the URL. */
const SHELL_FILE = 'index.html';
/** Where the shell names its assets' folder; replaced once, at start-up. */
const ASSET_BASE_MARK = '%ASSET_BASE%';
const DASHBOARD_PAGES = ['/', '/calls/:id', '/devices', '/sign-in'] as const;

/**
 * Nothing but our own files, no inline script or style, nothing framed or framing, no form
 * sent elsewhere: a hostile webhook payload shown on a page has nothing to run with.
 */
const DASHBOARD_CSP_DIRECTIVES = {
  defaultSrc: ["'none'"],
  scriptSrc: ["'self'"],
  styleSrc: ["'self'"],
  imgSrc: ["'self'", 'data:'],
  mediaSrc: ["'self'"],
  connectSrc: ["'self'"],
  baseUri: ["'none'"],
  formAction: ["'self'"],
  frameAncestors: ["'none'"],
};

interface DashboardAssets {
  /** Changes whenever any file under public/ does: the versioned folder's name. */
  hash: string;
  shell: string;
}

/**
 * The dashboard's pages and their assets: registered only when DASHBOARD is not false. Assets
 * live under /assets/<content hash>/, cached for a year: a new version has a new folder, and the
 * modules' relative imports stay inside it, so a browser never mixes two versions.
 */
export function registerDashboardRoutes(app: FastifyInstance): void {
  const assets = loadDashboardAssets();
  void app.register(async (dashboard) => {
    await dashboard.register(helmet, {
      contentSecurityPolicy: { useDefaults: false, directives: DASHBOARD_CSP_DIRECTIVES },
      frameguard: { action: 'deny' },
      referrerPolicy: { policy: 'no-referrer' },
      // HTTPS, and so HSTS, is the business of the proxy in front (it knows the host names).
      hsts: false,
    });
    await dashboard.register(fastifyStatic, {
      root: PUBLIC_DIR,
      prefix: `/assets/${assets.hash}/`,
      decorateReply: false,
      index: false,
      // The shell is served by the page routes, with its asset paths filled in.
      allowedPath: (pathName) => pathName !== `/${SHELL_FILE}`,
      immutable: true,
      maxAge: '365d',
      lastModified: false,
    });
    for (const page of DASHBOARD_PAGES) {
      // The browser's pages, not the API: left out of GET /api/openapi.json.
      dashboard.get(page, { schema: { hide: true } }, async (_request, reply) =>
        // no-cache: always revalidated, so a new version's shell (and asset folder) shows at once.
        reply.type('text/html; charset=utf-8').header('cache-control', 'no-cache').send(assets.shell),
      );
    }
  });
}

/** Read once at start-up: the hash over every file's path and bytes, and the shell pointing at it. */
export function loadDashboardAssets(): DashboardAssets {
  const files = (readdirSync(PUBLIC_DIR, { recursive: true, withFileTypes: true }) as import('node:fs').Dirent[])
    .filter((entry) => entry.isFile())
    .map((entry) => path.relative(PUBLIC_DIR, path.join(entry.parentPath, entry.name)).split(path.sep).join('/'))
    .sort();
  const digest = createHash('sha256');
  for (const file of files) digest.update(`${file}\0`).update(readFileSync(path.join(PUBLIC_DIR, file))).update('\0');
  const hash = digest.digest('hex').slice(0, 16);
  const shell = readFileSync(path.join(PUBLIC_DIR, SHELL_FILE), 'utf8').replaceAll(ASSET_BASE_MARK, `/assets/${hash}`);
  return { hash, shell };
}
