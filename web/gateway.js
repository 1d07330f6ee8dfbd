// Which gateway this page talks to. The app is usually served by a gateway (`lafs demo`,
// `lafs run`) and talks to it on its own origin. A copy of web/dist on any static host works too:
// its links carry the gateway's address in the query, `?gateway=https://gateway.example:3456`,
// never in the fragment with the cap, and the gateway answers cross-origin requests (CORS).
//
// Only the gateway's origin is used (scheme, host and port); its API lives at its root.

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
  return `${location.origin}${location.pathname}${query}#${fragment}`;
}
