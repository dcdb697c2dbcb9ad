/**
 * jobpixel pixel (p.js): the one script a partner's job-ad page loads.
 *
 * This is the readable source; the page downloads it minified (pixel_server/web/assets.py).
 * ARCHITECTURE.md, "The pixel's lifecycle", tells the same story in prose.
 *
 * 1. A second copy of this tag on the page does nothing (the guard runs first).
 * 2. Google Consent Mode gets its default: everything denied until the banner says otherwise.
 * 3. The site's public config is fetched; once the page is shown to someone (not prerendered,
 *    not a background tab), the banner is imported (it asks, or applies the stored choice); once it
 *    is in (or failed to load), a pageview is sent if the visitor allowed statistics. The banner
 *    adds to each event what only it reads: the page's JobPosting on a pageview, and the channel
 *    tags' own ids while marketing is in force (`__jpkit.more`).
 * 4. While the page is open the engagement clock runs (rules below); it is sent when the page
 *    is hidden or left, and on a single-page-app navigation, which also starts a new pageview.
 * 5. A page restored from the back/forward cache is a new pageview with a fresh clock.
 *
 * Engagement rules (what `engaged_ms` and `activity` mean):
 * - time counts only while the page is visible and its window has focus;
 * - and only up to IDLE_MS after the last input (pointer, key, scroll, focus; arriving on the
 *   page and coming back to it count as input too);
 * - `activity` is the number of IDLE_MS windows, counted from the pageview, with at least one
 *   input while visible and focused;
 * - an engagement event is sent only with at least MIN_ENGAGEMENT_MS of new engaged time or a
 *   new maximum scroll depth; `scroll` is the share (0–100) of the ad text
 *   ([data-jobpixel-text], else the whole document) that has been above the viewport's bottom.
 *
 * Nothing here may throw into the page: every entry point is wrapped by `safe`.
 */
(function (main) {
  try {
    main(window, document);
  } catch (e) {
    // nothing the pixel does may throw into the page
  }
})(function (window, document) {
  'use strict';

  // ---- constants ----
  const CONSENT_COOKIE = 'jobpixel_consent';
  const VISITOR_COOKIE = 'jobpixel_vid';
  const IDLE_MS = 5000;
  const MIN_ENGAGEMENT_MS = 3000;
  const MAX_PATH = 1024; // only this much of path + query is matched against the site's patterns
  const DENIED = 'denied';
  const TEXT_SELECTOR = '[data-jobpixel-text]';
  const APPLY_SELECTOR = '[data-jobpixel-apply]';
  const SETTINGS_SELECTOR = '[data-jobpixel-settings]';
  const THROTTLED_INPUTS = ['pointermove', 'pointerdown', 'keydown', 'scroll'];
  const FOCUS_INPUTS = ['focus', 'blur'];
  const CONSENT_EVENT = 'jobpixel:consent';

  const noop = () => {};

  /**
   * @param {!Function} f
   * @return {!Function} f, but an error stays in here: the page's own scripts run on
   */
  const safe = (f) => function () {
    try {
      return f.apply(this, arguments);
    } catch (e) {
      // swallowed: the page's own scripts run on
    }
  };

  /** gtag(): pushes `arguments` itself, as gtag.js expects. */
  function gtag() {
    window.dataLayer.push(arguments);
  }

  /**
   * The state, one `let` each (locals, so the minifier can shorten them):
   * @typedef {Object} PixelState
   * @property {?Object} config  the site's public config (/s/{site}.json); null until it arrives
   * @property {boolean} shown  the page has been shown to someone (not prerendered, not a background tab)
   * @property {boolean} ready  shown, and the banner's import settled (loaded or failed): events may be sent
   * @property {?string} pageviewId  the current pageview's event id; set only once the browser took it
   * @property {string} path  path + query of the current pageview, at most MAX_PATH characters
   * @property {string} url  full URL of the current pageview
   * @property {string} referrer  document.referrer, then the previous URL after an SPA navigation
   * @property {string} adId  the current pageview's ad: nextAd, else data-ad while on the landing page's
   *   path, else the ad_pattern's first group
   * @property {string} nextAd  jobpixel('ad', id): the ad of the next pageview (one pageview only)
   * @property {number} pageStart  performance.now() when the pageview started
   * @property {number} clockAt  performance.now() up to which engaged time has been counted
   * @property {number} lastInputAt  performance.now() of the last input
   * @property {boolean} live  visible and focused at clockAt
   * @property {number} engagedMs  engaged time not yet sent
   * @property {number} activity  IDLE_MS windows with input, not yet sent
   * @property {number} activityWindow  index of the last window counted (-1: none)
   * @property {number} maxScroll  the deepest scroll depth of this pageview, 0–100
   * @property {number} sentScroll  the depth last sent (or seen at the start)
   * @property {?number} pendingInputAt  the latest input not yet counted: it waits for an animation frame (requested with the first)
   * @property {!Array<!Function>} pending  what waits for the page to be shown: jobpixel(...) calls, clicks
   * @property {!Array<string>} sent  the bodies the browser took, for the banner (window.__jpkit.events): while
   *   marketing is in force it passes them on to the channel tags with their event ids; it takes over `push`
   */

  // ---- start: guard first, then Consent Mode's default ----
  const previous = window.jobpixel;
  if (previous && previous.jp) return; // a second copy of the tag: the first one does everything
  const queued = (previous && previous.q) || []; // calls the page's stub queued before we loaded

  const me = document.currentScript;
  const site = me.dataset.site;
  const origin = new URL(me.src).origin;
  const collectUrl = origin + '/collect';
  // The IDL property: it keeps the nonce after the browser hid the attribute ("nonce hiding");
  // every browser that hides nonces has it.
  const nonce = me.nonce;
  const landingPath = location.pathname; // data-ad names this path's ad only (not an SPA's next routes)

  window.dataLayer = window.dataLayer || [];
  gtag('consent', 'default', {ad_storage: DENIED, ad_user_data: DENIED, ad_personalization: DENIED,
    analytics_storage: DENIED, wait_for_update: 500});

  // ---- the state (PixelState above): one variable each ----
  let config = null;
  let shown = false;
  let ready = false;
  let pageviewId = null;
  let path = '';
  let url = '';
  let referrer = document.referrer;
  let adId = '';
  let nextAd = '';
  let pageStart = 0;
  let clockAt = 0;
  let lastInputAt = 0;
  let live = false;
  let engagedMs = 0;
  let activity = 0;
  let activityWindow = -1;
  let maxScroll = 0;
  let sentScroll = 0;
  let pendingInputAt = null;
  const pending = [];
  const sent = [];

  /** @return {number} milliseconds on the page's monotonic clock */
  const now = () => performance.now();

  // ---- helpers ----

  /**
   * @return {string} a random v4 UUID: crypto.randomUUID, else (plain-http pages: randomUUID needs a
   * secure context) the one that ends every blob URL — the File API has the browser generate a random
   * UUID for each ("blob:<origin>/<uuid>"), in any context. The empty Blob's URL entry stays until the
   * page unloads (a few bytes per event).
   */
  const uuid = () => (crypto.randomUUID ? crypto.randomUUID() : URL.createObjectURL(new Blob()).slice(-36));

  /** What the pixel shares with the banner (window.__jpkit, loadBanner); the banner adds `more`. */
  const kit = {uuid, origin, nonce, events: sent};

  // ---- cookies and delivery ----

  /** @return {?string} a cookie's decoded value */
  function readCookie(name) {
    const match = document.cookie.match('(?:^|; )' + name + '=([^;]*)');
    return match ? decodeURIComponent(match[1]) : null;
  }

  /** @return {?Object} the consent cookie {s, m, rev, …} the banner wrote */
  function readConsent() {
    try {
      return JSON.parse(readCookie(CONSENT_COOKIE));
    } catch (e) {
      return null;
    }
  }

  /**
   * Hand a body to the browser: sendBeacon, else fetch keepalive (sendBeacon missing, or refusing:
   * quota, size, privacy settings). A body the browser took goes to `sent`, for the banner.
   * @return {boolean} whether the browser took it
   */
  function deliver(body) {
    if (!(navigator.sendBeacon && navigator.sendBeacon(collectUrl, body))) {
      try {
        fetch(collectUrl, {method: 'POST', body, keepalive: true, credentials: 'omit'}).catch(noop);
      } catch (e) {
        return false; // no fetch either, or it refused at once
      }
    }
    sent.push(body); // the banner passes them on to the channel tags while marketing is in force
    return true;
  }

  /**
   * Send an event if the visitor allowed statistics for this revision and holds a visitor grant (the
   * server reads statistics and marketing from that signed grant and Sec-GPC, never from the body).
   * The banner's `more(name, landing)` adds `job` (pageviews on the path the page was loaded at: after
   * an SPA route change the document may still describe the old ad) and `channel_ids` (marketing in force).
   * Called only once ready (so the config is in).
   * @return {?string} the event id, if the browser took the event
   */
  function send(name, extra) {
    const consent = readConsent() || {};
    const token = readCookie(VISITOR_COOKIE);
    if (!consent.s || consent.rev != config.revision || !token) return null;
    const id = uuid();
    // the banner's extras first: they can add fields, never replace the pixel's own
    const body = JSON.stringify({...(kit.more && kit.more(name, location.pathname == landingPath)), site, ad: adId, name, url, referrer, event_id: id,
      pageview_id: pageviewId, client_ts: Date.now(), token, ...extra});
    return deliver(body) ? id : null;
  }

  // ---- the engagement clock ----

  /**
   * Move the clock to `at`, counting engaged time since the last move (rules at the top).
   * @param {number} at  performance.now() of the moment, never earlier than clockAt
   * @param {boolean} isInput
   */
  function tick(at, isInput) {
    const visible = !document.hidden && document.hasFocus();
    if (live) engagedMs += Math.max(0, Math.min(at, lastInputAt + IDLE_MS) - clockAt);
    if (isInput || (visible && !live)) lastInputAt = at;
    const slot = Math.floor((at - pageStart) / IDLE_MS);
    if (isInput && visible && slot != activityWindow) {
      activity++;
      activityWindow = slot;
    }
    live = visible;
    clockAt = at;
  }

  /** Count the input that waits for a frame, at the time it happened. */
  function takePendingInput() {
    const at = pendingInputAt;
    pendingInputAt = null;
    if (at != null) tick(Math.max(at, clockAt), true);
  }

  /** Count an input now (focus changes, visibility: they change what "live" is). */
  function inputNow() {
    takePendingInput();
    tick(now(), true);
  }

  /** @return {number} the deepest scroll depth of the ad text so far, 0–100 */
  function measureScroll() {
    const box = (document.querySelector(TEXT_SELECTOR) || document.documentElement).getBoundingClientRect();
    const seen = ((window.innerHeight - box.top) / box.height * 100) | 0; // NaN (no height) is 0
    maxScroll = Math.max(maxScroll, Math.min(100, seen));
    return maxScroll;
  }

  /** The work of throttled inputs, at most once per animation frame (no layout read per event). */
  function onFrame() {
    takePendingInput();
    measureScroll();
  }

  /** pointermove, pointerdown, keydown, scroll: note the time; the work waits for a frame. */
  function onThrottledInput() {
    if (pendingInputAt == null) requestAnimationFrame(safe(onFrame));
    pendingInputAt = now();
  }

  /** A fresh clock for a new pageview. */
  function resetEngagement() {
    pageStart = clockAt = lastInputAt = now();
    live = !document.hidden && document.hasFocus();
    engagedMs = 0;
    activity = 0;
    activityWindow = -1;
    pendingInputAt = null;
    maxScroll = 0;
    sentScroll = measureScroll();
  }

  /**
   * Send what engagement is due (rules at the top) and start counting afresh. A page left (or hidden)
   * while the banner is still on its way gets ready now: its pageview and waiting clicks are not lost.
   */
  function flushEngagement() {
    if (shown && !ready) onReady();
    takePendingInput();
    tick(now(), false);
    if (!pageviewId) return;
    const depth = measureScroll();
    if (engagedMs < MIN_ENGAGEMENT_MS && depth <= sentScroll) return;
    send('engagement', {engaged_ms: Math.round(engagedMs), scroll: depth, activity: activity});
    sentScroll = depth;
    engagedMs = activity = 0;
  }

  // ---- pageviews ----

  /** @return {string} path + query as matched against the site's patterns */
  const currentPath = () => (location.pathname + location.search).slice(0, MAX_PATH);

  /** Start a pageview for the current URL (once), and the thank-you page's apply_complete. */
  function startPageview() {
    if (pageviewId || !ready) return;
    path = currentPath();
    const adMatch = config.ad_pattern ? path.match(config.ad_pattern) : null;
    url = location.href;
    adId = nextAd || (location.pathname == landingPath && me.dataset.ad) || (adMatch && adMatch[1]) || '';
    nextAd = '';
    resetEngagement();
    pageviewId = send('pageview');
    if (pageviewId && config.thanks_pattern && path.match(config.thanks_pattern)) send('apply_complete');
  }

  /** A single-page-app navigation: the old page's engagement, then a new pageview. */
  function onNavigate() {
    if (!ready || currentPath() == path) return;
    flushEngagement();
    referrer = url;
    pageviewId = null;
    startPageview();
  }

  /** Back/forward cache restore: the visitor arrived again, a new pageview (once ready) with a fresh clock. */
  function onPageShow(event) {
    if (!event.persisted) return;
    pageviewId = null;
    startPageview();
  }

  // ---- the banner and the public API ----

  /** Open the banner's settings layer: now if it is loaded, else once it is (it is imported once the page is shown). */
  function openSettings() {
    if (window.__jpbanner) window.__jpbanner.open();
    else window.__jpopen = 1;
  }

  /**
   * Import b.js as a module from the pixel server (once: onShown acts once), then get ready. A dynamic
   * import inherits this script's nonce and is no Trusted Types sink, so neither the page's CSP nor its
   * Trusted Types need anything more for the banner. The banner gets the rest from window.__jpkit:
   * uuid(), the pixel server's origin, the page's nonce (for the channel tags and gated scripts it
   * starts) and `events` (the bodies sent, which it passes on to the channel tags while marketing is in
   * force); it sets `more` there. A banner that fails to load costs its extras, never the pageview.
   */
  function loadBanner() {
    window.__jpkit = kit;
    import(origin + '/b.js').catch(noop).then(safe(onReady));
  }

  /** The banner is in (or failed to load): count the pageview, then what waited (calls and clicks). */
  function onReady() {
    ready = true;
    startPageview();
    pending.splice(0).forEach(safe((run) => run()));
  }

  /** Run `task` now if ready, else once ready (calls and clicks before the config and the banner). */
  function later(task) {
    if (ready) task();
    else pending.push(task);
  }

  /** A click: on a settings element it opens the banner; on an apply button or a link to the ATS it is an apply_click. */
  function onClick(event) {
    const target = event.target;
    const link = target.closest('a');
    if (target.closest(SETTINGS_SELECTOR)) {
      event.preventDefault();
      openSettings();
    } else {
      later(() => (target.closest(APPLY_SELECTOR) || (link && config.ats_hosts.includes(link.hostname))) && send('apply_click'));
    }
  }

  /**
   * jobpixel('consent') → {statistics, marketing} or null; jobpixel('settings') opens the banner;
   * jobpixel('conversion', props); jobpixel('track', name, props) (sent once the page is shown);
   * jobpixel('ad', id): the ad of the next pageview (an SPA: call it before the route changes).
   * @return {*}
   */
  function api(command, a, b) {
    if (command == 'consent') {
      const consent = readConsent();
      return consent ? {statistics: !!consent.s, marketing: !!consent.m} : null;
    }
    if (command == 'settings') openSettings();
    if (command == 'ad') nextAd = String(a);
    if (command == 'conversion') later(() => send('apply_complete', {props: a}));
    if (command == 'track') later(() => send(a, {props: b}));
  }

  /** The site config is in. */
  function onConfig(siteConfig) {
    config = window.__jpcfg = siteConfig;
    onShown();
  }

  /**
   * Once the config is in and the page is shown to someone (prerendering over, a background tab
   * made visible): import the banner, which asks; then count and replay (onReady). Called on each of
   * those events; acts the first time all hold.
   */
  function onShown() {
    if (shown || !config || document.prerendering || document.hidden) return;
    shown = true;
    // The banner alone decides what a shown page needs: to ask; to apply a stored choice (Consent
    // Mode, gated scripts, channel tags); to delete a visitor id held without statistics; the
    // floating settings button. It is cached (an hour, then revalidated), so a page pays one import.
    loadBanner();
  }

  // ---- wiring ----

  /** Listen in the capture phase. */
  const on = (target, type, handler) => target.addEventListener(type, safe(handler), true);

  window.jobpixel = safe(api);
  window.jobpixel.jp = 1;
  queued.forEach((args) => api.apply(null, args));

  THROTTLED_INPUTS.forEach((type) => on(window, type, onThrottledInput));
  FOCUS_INPUTS.forEach((type) => on(window, type, inputNow));
  on(document, 'visibilitychange', () => {
    inputNow();
    if (document.hidden) flushEngagement();
    else onShown();
  });
  on(document, 'prerenderingchange', onShown);
  on(window, 'pagehide', flushEngagement);
  on(window, 'pageshow', onPageShow);
  on(window, 'popstate', onNavigate);
  on(window, CONSENT_EVENT, (event) => {
    if (event.detail.statistics) startPageview();
    else pageviewId = null;
  });
  on(document, 'click', onClick);
  ['pushState', 'replaceState'].forEach((name) => {
    const original = history[name];
    history[name] = function () {
      try {
        return original.apply(this, arguments);
      } finally {
        safe(onNavigate)();
      }
    };
  });

  fetch(origin + '/s/' + site + '.json')
    .then((response) => response.json())
    .then(safe(onConfig))
    .catch(noop);
});
