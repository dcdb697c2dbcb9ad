/* jobpixel consent banner: /b.js = window.__jpb={css,texts}; + this. Contract: ARCHITECTURE.md */
(() => {
  'use strict';

  /* ---- constants ---- */
  const CONSENT = 'jobpixel_consent';
  const VID = 'jobpixel_vid';
  const VERSION = 1;
  const DEFAULT_DAYS = 182;
  const DAY_MS = 864e5;
  const LANGS = ['nb', 'nn', 'en'];
  const CATS = ['necessary', 'statistics', 'marketing'];
  const HISTORY_LABEL = {accept_all: 'accept', reject_all: 'reject', custom: 'save'};
  const EVENT = 'jobpixel:consent';
  const GATED = 'script[type="text/plain"][data-jobpixel-category]';
  // "Googlebot/", "DuckDuckBot-", not "CUBOT_X19" phones
  const CRAWLER = /(bot|crawler|spider)[/\s;)-]|slurp|mediapartners|facebookexternalhit|bingpreview/i;
  const P = 'jpb-';
  const MAX_COOKIE_DAYS = 400; // Chrome caps every cookie's lifetime at 400 days
  // Cookies the channels' tags set besides the ones the site config lists, from the vendors'
  // documentation; `{id}` is the configured id, `{id_}` the same with '-' as '_'. Nothing else is
  // deleted: a page's own cookies (its own `_ga_XYZ`, say) are not ours to touch.
  const TAG_COOKIES = {
    gtag: ['_gid', '_gat_gtag_{id_}', '_dc_gtm_{id}'],
    snapchat: ['_sctr'],
  };
  // The pixel's events each started tag receives (issue #8 "In the browser"), under the names the
  // server forwards them with (pixel_server/forwarding/{meta,snapchat,ga4,linkedin}.py), so that a
  // channel deduplicates its tag's copy against the server's by the shared event id. Snap forwards no
  // apply_click; LinkedIn counts apply_complete only, toward the Insight Tag's own conversion.
  const TAG_EVENTS = {
    meta: {pageview: 'ViewContent', apply_click: 'ApplyClick', apply_complete: 'SubmitApplication'},
    snapchat: {pageview: 'VIEW_CONTENT', apply_complete: 'SIGN_UP'},
    gtag: {pageview: 'job_view', apply_click: 'apply_click', apply_complete: 'apply_complete'},
    linkedin: {apply_complete: 1},
  };
  const META_CUSTOM = ['ApplyClick']; // not a Meta standard event: fbq('trackCustom', …)
  // The first-party cookies each channel's own tag sets, sent as `channel_ids` (forwarding/base.py) while
  // marketing is in force, for the channels the server forwards (`server`). GA4's client id comes from
  // gtag('get').
  const TAG_IDS = {meta: {fbp: '_fbp', fbc: '_fbc'}, snapchat: {scid: '_scid'}, linkedin: {li_fat_id: 'li_fat_id'}};
  // The job metadata the server takes (ingest/request.py _job): text keys and their longest length
  const JOB_TEXT = {title: 200, category: 100, location: 100, employer: 100, employment_type: 50};
  const DATE = /^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])/;
  const ON = 'granted';
  const OFF = 'denied';
  const W = window;
  const D = document;
  const noop = () => {};

  /* ---- state ---- */
  /**
   * The state. cfg: site config, ch: its channels, src: pixel server, t: texts, stored: the consent
   * cookie {v,id,s,m,rev,first,last,exp,gpc} as found, consent: stored if valid for this revision,
   * started: channel tags on, gaid: the Google tag's client id (gtag('get')), job: the current pageview's ad
   * metadata (for the tags), opener: focus returns here, d1/d2: the layers, fb: float button, live: status region
   * (page), e: status line of the open layer, n: choices made (a later one wins), key/cid: the grant awaiting the
   * log and its choice_id (a retry of it reuses the id, so the server logs it once), id: the consent id
   * for a first choice (the same on a retry).
   */
  const S = {cfg: null, ch: [], src: '', lang: 'nb', t: {}, stored: null, consent: null, gpc: false, started: false, gaid: '', job: {},
    opener: null, d1: null, d2: null, fb: null, live: null, e: null, n: 0, key: 0, cid: '', id: ''};

  /** @return {!Function} f, but errors stay in here: nothing the banner does reaches the host page */
  const safe = (f) => function () {
    try {
      return f.apply(this, arguments);
    } catch (e) {
      // swallowed: the page's own scripts must run on
    }
  };

  /** @return {?string} raw cookie value */
  const readCookie = (name) => (D.cookie.match('(?:^|; )' + name + '=([^;]*)') || [])[1] || null;

  /** Set a cookie on this host for `sec` seconds. */
  const writeCookie = (name, value, sec) => {
    D.cookie = name + '=' + value + ';path=/;max-age=' + Math.max(0, sec | 0) + ';SameSite=Lax' +
      (location.protocol == 'https:' ? ';Secure' : '');
  };

  /** Delete a cookie here and on each parent domain. */
  const deleteCookie = (name) => {
    const h = location.hostname;
    const parts = h.split('.');
    // host-only (i = -1), then .a.b.c, .b.c; an IP has no parent domains
    for (let i = -1; i < (/^[\d.]+$/.test(h) ? 0 : parts.length - 1); i++) {
      D.cookie = name + '=;path=/;max-age=0' + (i < 0 ? '' : ';domain=.' + parts.slice(i).join('.'));
    }
  };

  /** @return {?Object} the consent cookie */
  const readConsent = () => {
    try {
      const c = JSON.parse(decodeURIComponent(readCookie(CONSENT)));
      return c && c.v === VERSION && typeof c.id == 'string' ? c : null;
    } catch (e) {
      return null;
    }
  };

  /** Store the consent cookie until c.exp. */
  const writeConsent = (c) => writeCookie(CONSENT, encodeURIComponent(JSON.stringify(c)), (c.exp - Date.now()) / 1e3);

  /**
   * What the pixel shares (p.js, window.__jpkit): uuid(), the pixel server's `origin`, the page's
   * `nonce` (read by the pixel from its own <script>: b.js is a module it imported, with no element
   * of its own), and `events`: the JSON bodies it sent to /collect (see `forward`).
   */
  const K = W.__jpkit;
  const NONCE = (K && K.nonce) || '';

  /**
   * The `jobpixel` Trusted Types policy for the scripts the banner starts, made where the page
   * enforces Trusted Types and allows the name. It passes values through (`String`): it is only ever
   * given a channel tag URL from the site's config or a gated script the page itself wrote. Without
   * Trusted Types, or where the page's `trusted-types` list does not name `jobpixel`, the same
   * pass-through object stands in: plain strings go on.
   */
  const POLICY = (() => {
    const passThrough = {createScriptURL: String, createScript: String};
    try {
      return W.trustedTypes.createPolicy('jobpixel', passThrough);
    } catch (e) {
      return passThrough;
    }
  })();

  /** @return {string} a v4 UUID (the pixel's helper) */
  const uuid = () => K.uuid();

  /** @return {!HTMLScriptElement} a <script src> (async, as every script added by script is) with the page's nonce */
  const addScript = (src) => {
    const s = D.createElement('script');
    s.src = POLICY.createScriptURL(src);
    s.nonce = NONCE;
    D.head.append(s);
    return s;
  };

  /** @return {string} the text `key` in the visitor's language */
  const text = (key) => S.t[key] || key;

  /** @return {!Element} new element; `on…` attrs are listeners */
  const el = (tag, attrs, ...kids) => {
    const e = D.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (typeof v == 'function') e.addEventListener(k.slice(2), safe(v));
      else if (v != null && v !== false) e.setAttribute(k, v === true ? '' : v);
    }
    e.append(...kids.flat(9).filter((k) => k || k === 0));
    return e;
  };

  /** gtag(): pushes `arguments` as gtag.js expects. */
  function gtag() {
    (W.dataLayer = W.dataLayer || []).push(arguments);
  }

  /** @return {!Function} window[name], a queue stub as in vendor snippets */
  const stub = (name, run) => {
    if (!W[name]) {
      const f = W[name] = function () { f[run] ? f[run].apply(f, arguments) : f.queue.push(arguments); };
      f.push = f;
      f.loaded = true;
      f.version = '2.0';
      f.queue = [];
    }
    return W[name];
  };

  /** Start a channel tag: the vendor's init snippet, then tag.src. */
  const startTag = (tag) => {
    const id = tag.id;
    const k = tag.kind;
    if (k == 'gtag') {
      gtag('js', new Date());
      gtag('config', id);
      gtag('get', id, 'client_id', (v) => S.gaid = v); // documented; the _ga cookie's form is not
    } else if (k == 'meta') {
      const f = stub('fbq', 'callMethod');
      W._fbq = W._fbq || f;
      f('init', id);
      W.fbq('track', 'PageView');
    } else if (k == 'linkedin') {
      W._linkedin_partner_id = id;
      (W._linkedin_data_partner_ids = W._linkedin_data_partner_ids || []).push(id);
      if (!W.lintrk) (W.lintrk = (a, b) => W.lintrk.q.push([a, b])).q = [];
    } else if (k == 'snapchat') {
      stub('snaptr', 'handleRequest')('init', id, {});
      W.snaptr('track', 'PAGE_VIEW');
    } else if (k != 'bidtheatre') {
      return;
    }
    addScript(tag.src).addEventListener('load', safe(() => {
      const p = S.cfg.thanks_pattern;
      if (k == 'bidtheatre' && tag.conversion && p && W.asxtrack && new RegExp(p).test(location.pathname + location.search)) {
        W.asxtrack.config = {conversionId: +tag.conversion, advertiserId: +id};
        W.asxtrack.callConversion();
      }
    }));
  };

  /**
   * Send one of the pixel's events to a started tag, with the event id the pixel sent to /collect
   * (Meta eventID, Snap client_dedup_id, LinkedIn event_id, a GA4 event parameter) and the job
   * parameters the server sends too (the ad id and the page's JobPosting: content_*, item_*, job_*).
   * GA4 has no dedup key between its tag and the server, so each event goes to it from one side only:
   * the server's, when the site forwards GA4 (`c.server`) and the event carries the client id it
   * needs; else the tag's (an event without the id is never sent by the server: failed_final).
   * @param {!Object} c  the channel (site config `channels` item)
   * @param {!Object} e  the event as the pixel sent it: {name, event_id, ad, channel_ids?, …}
   */
  const tagEvent = (c, e) => {
    const tag = c.tag;
    const k = tag.kind;
    const name = (TAG_EVENTS[k] || {})[e.name];
    const id = e.event_id;
    const ad = e.ad; // '' when the page has no ad id: then no content id
    if (!name) return;
    const j = S.job;
    // JSON drops the keys whose value is undefined (no such metadata on the page)
    const params = (o) => JSON.parse(JSON.stringify(o));
    if (k == 'meta') W.fbq(META_CUSTOM.includes(name) ? 'trackCustom' : 'track', name,
      params({content_ids: ad ? [ad] : undefined, content_name: j.title, content_category: j.category}), {eventID: id});
    if (k == 'snapchat') W.snaptr('track', name, params({item_ids: ad ? [ad] : undefined, item_category: j.category, client_dedup_id: id}));
    // GA4: job_id and job_<key> for each metadata key, at most 100 characters each (GA4's limit)
    if (k == 'gtag' && !(c.server && (e.channel_ids || {}).ga_client_id)) gtag('event', name, {send_to: tag.id, event_id: id,
      ...Object.fromEntries(Object.entries({id: ad, ...j}).filter((kv) => kv[1]).map(([key, v]) => ['job_' + key, v.slice(0, 100)]))});
    if (k == 'linkedin' && tag.conversion) W.lintrk('track', {conversion_id: +tag.conversion, event_id: id});
  };

  /**
   * One event the pixel sent (the JSON body it gave /collect, from window.__jpkit.events): passed on
   * to each started tag only while marketing is in force — the events sent before the banner started
   * once the stored choice is applied, the later ones as they are sent — as the server forwards the
   * events its marketing grant covers.
   */
  const forward = (body) => {
    if (S.started) S.ch.forEach((c) => safe(tagEvent)(c, JSON.parse(body)));
  };

  /* ---- what the banner adds to the pixel's events (window.__jpkit.more) ---- */

  /**
   * @return {string} `v` cut to `n` characters (code points, as the server counts them), without lone
   * surrogates: JSON.stringify writes one as "\\udXXX", which the server's JSON parser refuses (a 400 would
   * cost the pageview)
   */
  const clip = (v, n) => Array.from(v.replace(/[\ud800-\udfff]/gu, '')).slice(0, n).join('');

  /** @return {string} a JSON-LD value as text: a string or number, an object's `name`; a list joined */
  const ldText = (v) => [].concat(v).map((x) => (x && typeof x == 'object' ? ldText(x.name) : x == null ? '' : String(x)))
    .filter(Boolean).join(', ').replace(/\s+/g, ' ').trim();

  /** @return {!Object} the page's schema.org JobPosting (JSON-LD, also inside a list or an @graph), else {} */
  const jobPosting = () => {
    for (const s of D.querySelectorAll('script[type="application/ld+json"]')) {
      try {
        const nodes = [].concat(JSON.parse(s.textContent));
        const found = nodes.concat(...nodes.map((n) => n['@graph'] || [])).find((n) => [].concat(n['@type']).includes('JobPosting'));
        if (found) return found;
      } catch (e) {
        // a broken JSON-LD block: try the next
      }
    }
    return {};
  };

  /**
   * @return {!Object} the ad's metadata (issue #9): the page's JobPosting, overridden by the pixel tag's
   * data-title / data-category / data-location; only keys with a value, each within the server's
   * limits (a value the server would refuse would cost the pageview).
   */
  const job = () => {
    const p = jobPosting();
    const d = (D.querySelector('script[data-site]') || {}).dataset || {};
    const address = ([].concat(p.jobLocation)[0] || {}).address || {};
    const raw = {title: d.title || ldText(p.title), category: d.category || ldText(p.occupationalCategory) || ldText(p.industry),
      location: d.location || ldText(address.addressLocality || address), employer: ldText(p.hiringOrganization),
      employment_type: ldText(p.employmentType), date_posted: ldText(p.datePosted), valid_through: ldText(p.validThrough)};
    const out = {};
    for (const key in raw) {
      // a text within its length; a date as its YYYY-MM-DD day (a time after it is dropped)
      const v = JOB_TEXT[key] ? clip(raw[key], JOB_TEXT[key]) : (DATE.exec(raw[key]) || [])[0];
      if (v) out[key] = v;
    }
    return out;
  };

  /** @return {number} the words of the ad text ([data-jobpixel-text]; 0 without one) */
  const words = () => (D.querySelector('[data-jobpixel-text]') || {innerText: ''}).innerText.split(/\s+/).filter(Boolean).length;

  /**
   * @return {!Object} the ids the forwarded channels' own tags set here (strings of at most 200
   * characters): nothing is read for a channel the server does not forward to
   */
  const channelIds = () => {
    const ids = {};
    for (const c of S.ch.filter((c) => c.server)) {
      if (c.tag.kind == 'gtag') ids.ga_client_id = S.gaid;
      for (const [key, name] of Object.entries(TAG_IDS[c.tag.kind] || {})) ids[key] = readCookie(name);
    }
    for (const key in ids) if (!ids[key] || ids[key].length > 200) delete ids[key];
    return ids;
  };

  /**
   * What the pixel adds to an event body (p.js send): `job` on a pageview (with its word count), and
   * `channel_ids` while marketing is in force (the server keeps them only under a marketing grant).
   * `landing`: the page is still at the path it was loaded at. After a single-page app's route change
   * the document's JobPosting, text and the tag's data-* may still be the old ad's (the pixel counts
   * the pageview as history changes, before the new view renders): no metadata then, for the pageview
   * and for the tags' events until the next pageview (`state.job`).
   */
  const more = (name, landing) => {
    if (name == 'pageview') S.job = landing ? job() : {};
    const j = name == 'pageview' && landing ? {...S.job, words: words()} : {};
    if (!j.words) delete j.words;
    return {...Object.keys(j).length && {job: j}, ...S.started && {channel_ids: channelIds()}};
  };

  /** @return {!Array<string>} the names of the cookies a channel's tag sets here (config + TAG_COOKIES) */
  const channelCookies = (c) => c.cookies.map((k) => k.name).concat((TAG_COOKIES[c.tag.kind] || [])
    .map((n) => n.replace('{id_}', c.tag.id.replace(/-/g, '_')).replace('{id}', c.tag.id)));

  /** Marketing off: stop the tags, delete their cookies. */
  const stopChannels = () => {
    const names = [];
    for (const c of S.ch) {
      names.push(...channelCookies(c));
      if (c.tag.kind == 'gtag') W['ga-disable-' + c.tag.id] = true;
    }
    if (W.fbq) W.fbq('consent', 'revoke');
    S.gaid = ''; // the client id of a withdrawn consent must not ride on events after a new one
    for (const g of ['fbq', '_fbq', 'snaptr', 'lintrk']) if (W[g]) W[g] = noop;
    S.started = false;
    for (const pair of D.cookie.split('; ')) {
      const name = pair.split('=')[0];
      if (names.includes(name)) deleteCookie(name);
    }
  };

  /** Run gated <script type=text/plain data-jobpixel-category> of granted categories. */
  const activateGated = (stat, mkt) => D.querySelectorAll(GATED).forEach((old) => {
    const cat = old.dataset.jobpixelCategory;
    if (!(cat == 'statistics' ? stat : cat == 'marketing' && mkt)) return;
    const s = D.createElement('script');
    for (const a of old.attributes) if (!['type', 'data-src', 'nonce'].includes(a.name)) s.setAttribute(a.name, a.value);
    // the IDL nonce survives nonce hiding (the attribute reads ''); else the page's, as the pixel got it
    s.nonce = old.nonce || NONCE;
    if (old.dataset.src) s.src = POLICY.createScriptURL(old.dataset.src);
    else s.text = POLICY.createScript(old.text);
    old.replaceWith(s);
  });

  /** Match a consent: Consent Mode v2 (statistics → analytics_storage, marketing → ad_*), gated scripts, tags */
  const apply = (stat, mkt) => {
    const ad = mkt ? ON : OFF;
    gtag('consent', 'update', {analytics_storage: stat ? ON : OFF, ad_storage: ad, ad_user_data: ad, ad_personalization: ad});
    activateGated(stat, mkt);
    if (mkt && !S.started) S.ch.forEach((c) => safe(startTag)(c.tag)); // one vendor's failure stops no other
    S.started = mkt;
  };

  /**
   * POST /consent as text/plain (no preflight), keepalive (a withdrawal is logged even as the page goes).
   * @return {!Promise} the JSON of a 2xx answer, else a falsy value; it never rejects.
   */
  const post = (body) => fetch(S.src + '/consent', {method: 'POST', body: JSON.stringify(body), keepalive: true})
    .then((r) => r.ok && r.json()).catch(noop);

  /** @return {!Object} the POST /consent body */
  const logBody = (c, action, layer) => {
    const on = {necessary: 1, statistics: c.s, marketing: c.m};
    return {site: S.cfg.site, consent_id: c.id, choice_id: uuid(), action, granted: CATS.filter((k) => on[k]),
      denied: CATS.filter((k) => !on[k]), revision: c.rev, lang: S.lang, gpc: !!c.gpc, layer};
  };

  /** Tell the pixel. */
  const dispatch = (statistics, marketing) => W.dispatchEvent(new CustomEvent(EVENT, {detail: {statistics, marketing}}));

  /**
   * Put a choice in force: the consent cookie, the visitor token (res.token, kept no longer than the
   * consent) or its deletion, the channel tags, Consent Mode, gated scripts, and the pixel told.
   */
  const commit = (c, res) => {
    S.consent = S.stored = c;
    writeConsent(c);
    if (!c.s) deleteCookie(VID);
    else if (res) writeCookie(VID, encodeURIComponent(res.token), (Math.min(res.token_expires, c.exp) - Date.now()) / 1e3);
    if (!c.m) stopChannels();
    apply(!!c.s, !!c.m);
    dispatch(!!c.s, !!c.m);
  };

  /**
   * Write the stored choice (and the visitor id) again, same expiry: Safari caps a cookie written
   * by script at 7 days from its last write, so a visitor who comes back within 7 days keeps them.
   */
  const rewrite = (c) => {
    const vid = readCookie(VID);
    writeConsent(c);
    if (vid && c.s) writeCookie(VID, vid, (c.exp - Date.now()) / 1e3);
  };

  /** Choice done: close the layer, say so. */
  const done = () => {
    close();
    S.live.textContent = text('saved');
  };

  /**
   * A choice. Whatever it takes back holds at once (a grant taken back makes it `withdraw`), and is
   * logged on the way. Whatever it grants holds only once POST /consent answered 2xx with the
   * contract's JSON, so every grant in force is in the log: until then, and if the POST fails, the
   * choice before stays (less what was taken back), the layer stays open and says so, and the visitor
   * can try again.
   */
  const choose = (stat, mkt, action, layer) => {
    mkt = mkt && !S.gpc;
    const prev = S.consent || {};
    const old = S.stored;
    const now = Date.now();
    const n = ++S.n;
    const c = {v: VERSION, id: old ? old.id : S.id, s: +stat, m: +mkt, rev: S.cfg.revision,
      first: old ? old.first : now, last: now, exp: now + (S.cfg.consent_days || DEFAULT_DAYS) * DAY_MS, gpc: +S.gpc};
    // what holds before the answer: nothing that was not granted before
    const keep = {...c, s: c.s & prev.s, m: c.m & prev.m};
    const more = c.s > keep.s || c.m > keep.m;
    const back = prev.s > c.s || prev.m > c.m;
    if (back) action = 'withdraw';
    const key = [c.s, c.m, action, layer] + '';
    if (S.key != key) S.cid = uuid();
    S.key = more && key;
    const body = {...logBody(c, action, layer), choice_id: S.cid};
    const token = readCookie(VID); // the grant in force: keeps the visitor id, and a withdrawal names it
    if (token) body.token = decodeURIComponent(token);
    S.e.textContent = '';
    if (back || !more) commit(keep);
    if (!more) done();
    post(body).then(safe((res) => {
      // an answer to an earlier choice, or to one that grants nothing, changes nothing
      if (n != S.n || !(c.s || c.m)) return;
      const g = res && res.granted;
      if (!Array.isArray(g) || (g.includes(CATS[1]) && !(res.token && res.token_expires))) {
        if (more) S.e.textContent = text('failed');
        return;
      }
      S.key = 0;
      c.s &= g.includes(CATS[1]);
      // the server saw Sec-GPC: marketing stays off
      if (c.m && !g.includes(CATS[2])) c.m = 0, c.gpc = S.gpc = 1;
      commit(c, c.s && res);
      if (more) done();
    }));
  };

  /** Stale revision: log `expired` and hold nothing granted (logged once). */
  const expire = (old) => {
    const token = readCookie(VID);
    post({...logBody(old, 'expired', 0), ...token && {token: decodeURIComponent(token)}});
    writeConsent(S.stored = {...old, s: 0, m: 0});
    deleteCookie(VID);
    stopChannels();
    dispatch(false, false);
  };

  /** @return {?Element} privacy policy link */
  const policy = () => S.cfg.policy_url && el('a', {href: S.cfg.policy_url}, text('policy'));

  /** @return {?Element} GPC notice */
  const gpcNote = () => S.gpc && el('p', {class: P + 'g'}, text('gpc'));

  /** @return {!Element} */
  const button = (key, onclick, cls) => el('button', {type: 'button', class: cls, onclick}, text(key));

  /** @return {!Array<!Element>} accept and reject, alike, + `third`; then the layer's status line */
  const buttons = (layer, third) => [el('div', {class: P + 'b'},
    button('accept', () => choose(true, true, 'accept_all', layer)),
    button('reject', () => choose(false, false, 'reject_all', layer)), third),
  S.e = el('p', {class: P + 'e', role: 'status'})];

  /**
   * @return {!Element} a layer's dialog, first in the page (the first tab stop: it is fixed, so
   * nothing moves)
   */
  const dialog = (layer, ...kids) => {
    const d = el('dialog', {class: 'jpb jpb-' + layer, tabindex: -1, 'aria-labelledby': P + 't' + layer}, kids);
    D.body.prepend(d);
    return d;
  };

  /**
   * First layer: non-modal, fixed (no layout shift). It takes no focus from the page (an autofocus
   * field keeps it); it is the first tab stop and its title is announced through the status region.
   * `focus`: back from the second layer, where the visitor was working in the banner.
   */
  const showFirst = (focus) => {
    const d = S.d1 = dialog(1, el('h2', {id: P + 't1'}, text('title')), el('p', {id: P + 'd1'}, text('intro'), ' ', policy()),
      gpcNote(), buttons(1, button('settings', open, P + 's')));
    d.setAttribute('aria-describedby', P + 'd1');
    d.open = true; // not show(): that runs the dialog focusing steps
    S.live.textContent = text('title');
    if (focus === true) d.focus();
  };

  /** @return {!Element} a category and its switch */
  const category = (key, on, locked, more) => {
    const id = P + key;
    return el('div', {class: P + 'c'},
      el('div', {class: P + 'h'}, el('h3', null, el('label', {for: id}, text(key))),
        el('span', null, key == 'necessary' && el('small', null, text('on') + ' '),
          el('input', {type: 'checkbox', role: 'switch', id, checked: on, disabled: locked, 'aria-describedby': id + '-d'}))),
      el('p', {id: id + '-d'}, text(key + '_d').replace('{days}', Math.min(S.cfg.consent_days || DEFAULT_DAYS, MAX_COOKIE_DAYS))), more);
  };

  /** @return {?Element} per channel: what, who, where, cookies, policy */
  const channelList = () => {
    return S.ch.length > 0 && el('details', null, el('summary', null, text('partners') + ' (' + S.ch.length + ')'),
      S.ch.map((c) => el('dl', null, el('dt', null, c.name),
        el('dd', null, c.purpose[S.lang] || c.purpose.nb),
        el('dd', null, text('who') + ': ' + c.processor),
        el('dd', null, text('where') + ': ' + c.location),
        el('dd', null, text('cookies') + ': ' + (c.cookies.map((k) => k.name + ' (' + Math.min(k.days, MAX_COOKIE_DAYS) + ' ' + text('days') + ')').join(', ') || text('none'))),
        el('dd', null, el('a', {href: c.privacy_url}, c.name + ': ' + text('policy'))))));
  };

  /** Show GET /consent/{id} history. */
  const showHistory = () => {
    const box = D.getElementById(P + 'hist');
    fetch(S.src + '/consent/' + encodeURIComponent(S.stored.id) + '?site=' + encodeURIComponent(S.cfg.site),
      {headers: {Authorization: 'Bearer ' + decodeURIComponent(readCookie(VID) || '')}}) // the grant opens it
      .then((r) => r.json())
      .then((res) => box.replaceChildren(el('ol', null, res.history.map((h) =>
        el('li', null, new Date(h.ts).toLocaleString(S.lang) + ': ' + text(HISTORY_LABEL[h.action] || h.action) +
          ' — ' + h.granted.map((k) => text(k)).join(', '))))))
      .catch(() => { box.textContent = text('error'); });
  };

  /** @return {!Promise<!Object>} /me (GET: the visitor's data, DELETE: erase it); the grant opens it */
  const me = (method) => fetch(S.src + '/me?site=' + encodeURIComponent(S.cfg.site),
    {method, headers: {Authorization: 'Bearer ' + decodeURIComponent(readCookie(VID) || '')}})
    .then((r) => r.ok ? r.json() : Promise.reject(r));

  /** "Se mine data": the events tied to this browser, and all of it as a JSON file. */
  const showMine = () => {
    const box = D.getElementById(P + 'hist');
    me('GET').then((doc) => box.replaceChildren(el('ol', null,
      [].concat(doc.tables.events || [], doc.tables['journal.events'] || []).map((e) => el('li', null,
        new Date(e.ts > 0 ? e.ts * 1e3 : e.ts).toLocaleString(S.lang) + ': ' + e.name + ' ' + e.path))),
    el('a', {href: URL.createObjectURL(new Blob([JSON.stringify(doc)], {type: 'application/json'})),
      download: 'jobpixel-' + S.cfg.site + '.json'}, text('download'))))
      .catch(() => { box.textContent = text('error'); });
  };

  /** "Slett mine data": erase it everywhere (the server revokes the grant); then forget the choice here. */
  const eraseMine = () => {
    const box = D.getElementById(P + 'hist');
    if (!W.confirm(text('erase') + '?')) return;
    me('DELETE').then((res) => {
      deleteCookie(VID);
      deleteCookie(CONSENT);
      S.consent = S.stored = null;
      stopChannels();
      apply(false, false);
      dispatch(false, false);
      box.textContent = text('erased').replace('{n}', Object.values(res.erased).reduce((a, b) => a + b, 0));
    }).catch(() => { box.textContent = text('error'); });
  };

  /** Leave layer 2: to layer 1 if nothing is chosen yet. */
  const closeSettings = () => {
    if (S.d2) S.d2.remove();
    S.d2 = null;
    if (S.consent) close();
    else showFirst(true);
  };

  /**
   * The second layer's content, top to bottom. A new section (a function returning an element, or
   * null to leave it out) is one more line here.
   * @return {!Array<?Element>}
   */
  const settingsSections = (c) => [
    el('h2', {id: P + 't2'}, text('title2')),
    el('p', null, text('intro2'), ' ', policy()),
    gpcNote(),
    category('necessary', true, true),
    category('statistics', !!c.s, false),
    category('marketing', !!c.m && !S.gpc, S.gpc, channelList()),
    buttons(2, button('save', () => choose(D.getElementById(P + 'statistics').checked,
      D.getElementById(P + 'marketing').checked, 'custom', 2), P + 's')),
    el('p', null, S.stored && button('history', showHistory, P + 'l'), ' ', button('close', closeSettings, P + 'l')),
    readCookie(VID) && el('p', null, button('mine', showMine, P + 'l'), ' ', button('erase', eraseMine, P + 'l')),
    el('div', {id: P + 'hist', 'aria-live': 'polite'}),
    S.stored && el('small', null, text('cid') + ': ' + S.stored.id),
  ];

  /**
   * The banner's styles without inline <style> where the browser allows: a constructable
   * stylesheet is not subject to the page's `style-src`. Elsewhere a <style> with the page's nonce.
   */
  const addStyles = (css) => {
    try {
      const sheet = new CSSStyleSheet();
      sheet.replaceSync(css);
      D.adoptedStyleSheets = [...D.adoptedStyleSheets, sheet];
    } catch (e) {
      const style = el('style', null, css);
      style.nonce = NONCE;
      D.head.append(style);
    }
  };

  /** Open layer 2; public as __jpopen(), called by the pixel. */
  const open = () => {
    if (!S.cfg) return;
    const c = S.consent || {};
    // focus returns to where it was in the page (not to a button of the first layer, now gone)
    if (!(S.d1 && S.d1.contains(D.activeElement))) S.opener = D.activeElement;
    [S.d1, S.d2].forEach((d) => d && d.remove());
    S.d1 = null;
    const d = S.d2 = dialog(2, settingsSections(c));
    d.addEventListener('cancel', safe((e) => {
      e.preventDefault();
      closeSettings();
    }));
    d.showModal();
    d.focus();
  };

  /** Close, return focus, show the float button if configured. */
  const close = () => {
    [S.d1, S.d2].forEach((d) => d && d.remove());
    S.d1 = S.d2 = null;
    S.e = S.live;
    if (S.cfg.float_button && !S.fb) D.body.append(S.fb = button('float', open, P + 'f'));
    const o = S.opener;
    S.opener = null;
    if (o && o != D.body && o.isConnected) o.focus();
  };

  /** Apply a valid stored choice, or ask; no statistics, no visitor id. */
  const init = safe(() => {
    const cfg = S.cfg = W.__jpcfg;
    const B = W.__jpb || {};
    const T = B.texts || {};
    const tag = D.querySelector('script[data-site]');
    S.ch = cfg.channels || [];
    S.src = K.origin;
    S.lang = [tag && tag.dataset.lang, D.documentElement.lang, cfg.lang, 'nb']
      .map((l) => String(l || '').toLowerCase().slice(0, 2).replace('no', 'nb')).find((l) => LANGS.includes(l));
    S.t = {...T.nb, ...T[S.lang], ...(cfg.texts || {})[S.lang]};
    S.gpc = navigator.globalPrivacyControl === true;
    S.id = uuid();
    addStyles(B.css);
    D.body.append(S.live = S.e = el('div', {class: P + 'v', role: 'status'}));
    let c = S.stored = readConsent();
    if (c && c.rev !== cfg.revision) {
      if (c.s || c.m) expire(c);
      c = null;
    }
    S.consent = c;
    if (!(c && c.s)) deleteCookie(VID);
    if (c && c.m && S.gpc) {
      choose(!!c.s, false, 'custom', 1); // GPC now on: withdraw marketing
    } else if (c) {
      rewrite(c);
      apply(!!c.s, !!c.m);
      close();
    } else {
      showFirst();
    }
    // the pixel's events: those it sent before the banner started (a page view, the thanks page's
    // apply_complete), now that the stored choice is in force; then each one as the pixel sends it
    const events = K.events || [];
    events.splice(0).forEach(safe(forward));
    events.push = safe(forward);
    if (ask) open();
  });

  const ask = W.__jpopen == 1; // set by the pixel: open settings once loaded
  W.__jpbanner = {open: safe(open), state: S};
  if (K) K.more = safe(more);
  W.__jpopen = W.__jpbanner.open;
  if (CRAWLER.test(navigator.userAgent) || !W.__jpcfg || !K) W.__jpopen = W.__jpbanner.open = noop;
  else if (D.body) init();
  else D.addEventListener('DOMContentLoaded', init);
})();
