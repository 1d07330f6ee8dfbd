// Serves web/dist (or $DIST_DIR) on an ephemeral 127.0.0.1 port for the whole run; tests read the
// address from LAFS_WEB_URL (environment set here reaches the test workers).
import { resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { serve } from './serve.mjs';

export default async function globalSetup() {
  const here = dirname(fileURLToPath(import.meta.url));
  const dir = process.env.DIST_DIR ?? resolve(here, '../web/dist');
  const server = await serve(dir);
  process.env.LAFS_WEB_URL = server.url;
  return async () => server.close();
}
