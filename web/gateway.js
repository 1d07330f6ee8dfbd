// Which gateway this page talks to. The app is usually served by a gateway (`lafs demo`,
// `lafs run`) and talks to it on its own origin. A copy of web/dist on any static host works too:
// its links carry the gateway's address in the query, `?gateway=https://gateway.example:3456`,
// never in the fragment with the cap, and the gateway answers cross-origin requests (CORS).
//
// Only the gateway's origin is used (scheme, host and port); its API lives at its root.
//
// A self-contained link needs no gateway: `#<cap>&grid=<introducer URL>` names the grid, and
// the storage servers come from that introducer (gridOf, serverListText). The grid address is
// public (it names servers, not files) and travels in the fragment next to the cap.

/** The `?gateway=` value of this page's address, checked: `{ origin }`, or `{ error }`. */
function fromQuery() {
  const value = new URLSearchParams(location.search).get('gateway');
  if (value === null) return { origin: location.origin, given: false };
  let url;
  try {
    url = new URL(value);
  } catch {
    return { error: `the gateway address "${value}" in this link is not a URL`, origin: location.origin, given: true };
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    return { error: `the gateway address "${value}" in this link is not an http or https URL`, origin: location.origin, given: true };
  }
  return { origin: url.origin, given: true };
}

const chosen = fromQuery();

/** The gateway's origin (this page's own unless the link names another one). */
export const gatewayOrigin = chosen.origin;

/** Why the link's `?gateway=` cannot be used, or null. */
export const gatewayError = chosen.error ?? null;

/** The absolute URL of `path` (starting with `/`) on the gateway. */
export function apiUrl(path) {
  if (gatewayError) throw new Error(gatewayError);
  return new URL(path, gatewayOrigin).href;
}

/**
 * A share link to this page for `fragment` (a cap): it keeps `?gateway=` when the page has one,
 * so that a link made on a static copy of the app opens there and reads from the same gateway.
 */
export function shareLink(fragment) {
  const query = chosen.given && !gatewayError ? `?gateway=${encodeURIComponent(gatewayOrigin)}` : '';
  // A self-contained link names its grid; so do the links made from its page.
  return `${location.origin}${location.pathname}${query}#${withGrid(fragment)}`;
}

/**
 * Parameter `name` of a share link's fragment (`<cap>&k=v&…`, docs/spec/caps.md), decoded; null
 * if absent.
 */
export function fragmentParam(fragment, name) {
  const i = fragment.indexOf('&');
  if (i < 0) return null;
  try {
    return new URLSearchParams(fragment.slice(i + 1)).get(name);
  } catch {
    return null;
  }
}

/**
 * The introducer a self-contained link names (`#<cap>&grid=<introducer URL>`), as the origin of
 * its HTTP API (`ws://h:p/v1/introducer` and `http://h:p` name the same one); null if the
 * fragment has none; `{ error }` if it is not an http(s) or ws(s) URL.
 */
export function gridOf(fragment) {
  const value = fragmentParam(fragment, 'grid');
  if (!value) return null;
  let url;
  try {
    url = new URL(value);
  } catch {
    return { error: `the grid address "${value}" in this link is not a URL` };
  }
  const scheme = { 'http:': 'http:', 'https:': 'https:', 'ws:': 'http:', 'wss:': 'https:' }[url.protocol];
  if (!scheme) return { error: `the grid address "${value}" in this link is not an http(s) or ws(s) URL` };
  return { origin: `${scheme}//${url.host}`, text: value };
}

/** The grid of the link in this page's address (see gridOf), or null. */
export function currentGrid() {
  return gridOf(location.hash.replace(/^#/, ''));
}

/**
 * The storage servers to talk to, as the JSON text of the gateway's `GET /grid/servers`: from
 * the link's introducer when it names one (`GET /v1/servers`, every announcement's signature
 * checked in wasm), else from the gateway.
 */
export async function serverListText() {
  const grid = currentGrid();
  if (grid?.error) throw new Error(grid.error);
  const url = grid ? `${grid.origin}/v1/servers` : apiUrl('/grid/servers');
  let resp;
  try {
    resp = await fetch(url, { cache: 'no-store' });
  } catch (e) {
    throw new Error(`the ${grid ? 'introducer' : 'gateway'} could not be reached (${e?.message ?? e})`);
  }
  if (!resp.ok) throw new Error(`the ${grid ? 'introducer' : 'gateway'} answered ${resp.status} when asked for the storage servers`);
  if (!grid) return resp.text();
  return window.wasmBindings.introducerServers(new Uint8Array(await resp.arrayBuffer()));
}

/** The tab's grid client (wasm `LafsGrid`) over the servers of serverListText(). */
export async function gridClient() {
  return window.wasmBindings.LafsGrid.fromServerList(await serverListText());
}

/** `fragment` with this page's `&grid=` added (when it has one and `fragment` has none). */
export function withGrid(fragment) {
  const grid = currentGrid();
  return grid?.text && !gridOf(fragment) ? `${fragment}&grid=${encodeURIComponent(grid.text)}` : fragment;
}

/**
 * Whether this page keeps file data away from the gateway: `?direct=on`, or a self-contained
 * link (there is no gateway). Uploads are then encoded in the tab, shares straight to the
 * storage servers.
 */
export function encodesInTab() {
  return new URLSearchParams(location.search).get('direct') === 'on' || Boolean(currentGrid());
}
