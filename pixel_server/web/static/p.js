/** jobpixel pixel, see ARCHITECTURE.md */
!function(w,d,H,L,M){try{
// constants
var CONSENT='jobpixel_consent',VID='jobpixel_vid',IDLE=5e3,MIN=3e3,NO='denied',
TEXT='[data-jobpixel-text]',APPLY='[data-jobpixel-apply]',SET='[data-jobpixel-settings]',
INPUT='scroll pointermove pointerdown keydown focus blur';
/** gtag: dataLayer wants Arguments */
function gtag(){w.dataLayer.push(arguments)}
w.dataLayer||=[];
gtag('consent','default',{ad_storage:NO,ad_user_data:NO,ad_personalization:NO,analytics_storage:NO,wait_for_update:500});
var old=w.jobpixel,me=d.currentScript,ds=me.dataset,src=new URL(me.src).origin,
cfg,q=old?.q||[],b,pv,path,url,referrer=d.referrer,ad,
live=0,at=Date.now(),la=at,t0=at,eng=0,act=0,win,top=0,sent=0;
/** guarded f */
function safe(f){return function(){try{return f.apply(this,arguments)}catch(e){}}}
/** listen, capture */
function on(t,e,f){t.addEventListener(e,safe(f),!0)}
/** consent {s,m,rev}, or v: token */
function cookie(v){try{var m=d.cookie.match('(^|; )'+(v?VID:CONSENT)+'=([^;]*)');return m&&(v?m[2]:JSON.parse(decodeURIComponent(m[2])))}catch(e){}}
/** send event if allowed (marketing: stored grant, and no GPC); its id */
function send(name,x){
var c=cookie()||{},token=cfg&&c.s&&c.rev==cfg.revision&&cookie(1),id=crypto.randomUUID?.()||URL.createObjectURL(new Blob).slice(-36);
if(token)navigator.sendBeacon(src+'/collect',JSON.stringify({site:ds.site,ad,name,url,referrer,event_id:id,pageview_id:pv,client_ts:Date.now(),token,marketing:!!c.m&&!navigator.globalPrivacyControl,...x}));
return token&&id}
/** max % of text seen */
function depth(){var r=(d.querySelector(TEXT)||d.documentElement).getBoundingClientRect();return top=M.max(top,M.min(100,(innerHeight-r.top)/r.height*100|0))}
/** engaged ms: visible, focused, input < IDLE ago; e: input */
function tick(e){var n=Date.now(),v=!d.hidden&&d.hasFocus(),k=(n-t0)/IDLE|0;if(live)eng+=M.max(0,M.min(n,la+IDLE)-at);if(e||v>live)la=n;if(e&&v&&k!=win)act++,win=k;live=v;return at=n}
/** engagement, if >=MIN ms or new max */
function flush(){tick();if(pv&&(eng>=MIN||depth()>sent))send('engagement',{engaged_ms:eng,scroll:sent=top,activity:act}),eng=act=0}
/** pageview, once per URL */
function page(){if(pv||!cfg)return;
path=L.pathname+L.search;var m=cfg.ad_pattern&&path.match(cfg.ad_pattern);
url=L.href;ad=ds.ad||m&&m[1]||'';
t0=la=tick();eng=act=top=0;win=-1;sent=depth();
(pv=send('pageview'))&&cfg.thanks_pattern&&path.match(cfg.thanks_pattern)&&send('apply_complete')}
/** SPA navigation */
function nav(){if(cfg&&L.pathname+L.search!=path)flush(),referrer=url,pv=null,page()}
/** banner; o: open settings */
function show(o){if(o)w.__jpbanner?w.__jpbanner.open():w.__jpopen=1;
if(cfg&&!b)b=d.createElement('script'),b.src=src+'/b.js',d.head.append(b)}
/** jobpixel(cmd,...) */
function api(c,a,p){return c=='consent'?(c=cookie())&&{statistics:!!c.s,marketing:!!c.m}:
c=='settings'?show(1):!cfg?q.push(arguments):c=='conversion'?send('apply_complete',{props:a}):c=='track'&&send(a,{props:p})}
if(old?.jp)return;
w.jobpixel=safe(api);w.jobpixel.jp=1;
tick();
INPUT.split(' ').map(e=>on(w,e,tick));
on(w,'scroll',depth);
on(d,'visibilitychange',e=>{tick(e);d.hidden&&flush()});
on(w,'pagehide',flush);
on(w,'popstate',nav);
on(w,'jobpixel:consent',e=>e.detail.statistics?page():pv=null);
on(d,'click',e=>{var t=e.target,a=t.closest('a');
t.closest(SET)?(e.preventDefault(),show(1)):(t.closest(APPLY)||a&&cfg.ats_hosts.includes(a.hostname))&&send('apply_click')});
['pushState','replaceState'].map(k=>{var f=H[k];H[k]=function(){try{return f.apply(this,arguments)}finally{safe(nav)()}}});
fetch(src+'/s/'+ds.site+'.json').then(r=>r.json()).then(c=>{
var k=cookie();cfg=w.__jpcfg=c;w.__jpsrc=src;
// the banner asks, applies a stored grant (consent mode, gated scripts, tags), deletes a vid without statistics
if(!k||k.rev!=c.revision||k.s||k.m||cookie(1)||c.float_button||w.__jpopen)show();
page();q.map(a=>w.jobpixel(...a))}).catch(safe)
}catch(e){}}(window,document,history,location,Math);
