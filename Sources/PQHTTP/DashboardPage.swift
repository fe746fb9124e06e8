/// The dashboard: one page, served from the binary; nothing is fetched from outside it.
/// Every value that comes from a task, a job or a host is put into the page as text
/// (`textContent`, attributes set with `setAttribute`), never as HTML.
enum DashboardPage {
    static let html: String = #"""
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>pq</title>
        <link rel="icon" href="data:,">
        <style>
        :root{--bg:#f3f4f6;--card:#fff;--line:#e5e7eb;--text:#111827;--muted:#6b7280;--accent:#2563eb;
          --green:#15803d;--red:#b91c1c;--grey:#4b5563;--blue:#1d4ed8;--amber:#b45309}
        *{box-sizing:border-box}
        [hidden]{display:none !important}
        body{margin:0;background:var(--bg);color:var(--text);font:13px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
        header{display:flex;align-items:center;gap:10px;padding:8px 16px;background:#1f2937;color:#f9fafb}
        header h1{margin:0;font-size:18px;letter-spacing:.02em}
        header .sub{color:#9ca3af}
        .grow{flex:1}
        #live{font-size:12px;padding:2px 8px;border-radius:10px;background:#374151}
        #live::before{content:"";display:inline-block;width:7px;height:7px;border-radius:50%;margin-right:6px;background:#9ca3af;vertical-align:1px}
        #live.live-live::before{background:#22c55e}
        #live.live-reconnecting::before,#live.live-connecting::before{background:#f59e0b}
        #live.live-locked::before{background:#ef4444}
        main{display:grid;grid-template-columns:repeat(12,minmax(0,1fr));gap:12px;padding:12px 16px;max-width:1700px;margin:0 auto}
        .card{grid-column:span 12;background:var(--card);border:1px solid var(--line);border-radius:6px;padding:10px 12px;min-width:0}
        .c5{grid-column:span 5}.c7{grid-column:span 7}
        main:has(#task-detail:not([hidden])) #tasks-card{grid-column:span 7}
        @media (max-width:1000px){.card,.c5,.c7,main:has(#task-detail:not([hidden])) #tasks-card{grid-column:1/-1}}
        h2{margin:0;font-size:14px}
        h3{margin:10px 0 4px;font-size:12px;color:var(--muted);text-transform:uppercase;letter-spacing:.04em}
        .card-head{display:flex;align-items:center;gap:8px;flex-wrap:wrap;margin-bottom:6px}
        table{border-collapse:collapse;width:100%}
        th,td{text-align:left;padding:3px 6px;border-bottom:1px solid var(--line);vertical-align:top}
        thead th{position:sticky;top:0;background:var(--card);font-size:11px;font-weight:600;color:var(--muted);text-transform:uppercase;letter-spacing:.03em;white-space:nowrap}
        .n{text-align:right;font-variant-numeric:tabular-nums}
        .mono,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px}
        .nowrap{white-space:nowrap}
        .kw{word-break:break-all;color:#374151}
        .muted{color:var(--muted)}
        .empty td{color:var(--muted);font-style:italic;text-align:center}
        .scroll{overflow:auto;max-height:440px}
        #events-card .scroll{max-height:360px}
        #tasks tbody tr{cursor:pointer}
        #tasks tbody tr:hover{background:#f9fafb}
        #tasks tbody tr.sel{background:#eff6ff}
        .st{display:inline-block;padding:0 7px;border-radius:9px;font-size:11px;font-weight:600;background:#f3f4f6;color:var(--grey);white-space:nowrap}
        .st-SUCCESS,.st-running,.st-ready{background:#dcfce7;color:var(--green)}
        .st-FAILURE,.st-dead,.st-lost{background:#fee2e2;color:var(--red)}
        .st-REVOKED,.st-stopped{background:#e5e7eb;color:var(--grey)}
        .st-STARTED,.st-busy{background:#dbeafe;color:var(--blue)}
        .st-QUEUED,.st-RETRY,.st-stopping,.st-paused,.st-starting{background:#fef3c7;color:var(--amber)}
        .msg{margin:4px 0;min-height:0;color:var(--muted)}
        .msg:empty{display:none}
        .error{color:var(--red)}
        button,input,select,textarea{font:inherit}
        input,select,textarea{border:1px solid #d1d5db;border-radius:4px;padding:3px 6px;background:#fff;min-width:0}
        textarea{width:100%;resize:vertical;font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px}
        button{border:1px solid #d1d5db;border-radius:4px;padding:3px 10px;background:#f9fafb;cursor:pointer}
        button:hover:not(:disabled){background:#f3f4f6}
        button:disabled{opacity:.5;cursor:default}
        button.primary{background:var(--accent);border-color:var(--accent);color:#fff}
        button.danger{border-color:#fca5a5;color:var(--red)}
        button.ghost{background:transparent;border-color:transparent;color:inherit}
        button.link{border:0;padding:0;background:none;color:var(--accent);cursor:pointer;text-decoration:underline;font:inherit}
        .filters{display:flex;gap:6px;flex-wrap:wrap;align-items:center;margin-left:auto}
        .filters input{width:120px}.filters #filter-limit{width:64px}
        #submit-form{display:grid;grid-template-columns:70px minmax(0,1fr);gap:6px 8px;align-items:center}
        #submit-form label{color:var(--muted)}
        #submit-form .full{grid-column:2}
        #submit-form .pair{display:flex;gap:6px}#submit-form .pair input{flex:1}
        #submit-hint{font-size:12px;word-break:break-word}
        .throughput{display:flex;gap:16px;align-items:center;margin-top:10px;padding-top:8px;border-top:1px solid var(--line)}
        .big{font-size:20px;font-weight:600;font-variant-numeric:tabular-nums}
        .spark .line{fill:none;stroke:var(--accent);stroke-width:1.5}
        .spark .area{fill:#dbeafe}.spark .base{stroke:#e5e7eb}.spark .dot{fill:var(--accent)}
        .bars .bar{fill:#60a5fa}.bars .base{stroke:#d1d5db}
        table.sub td{border:0;padding:0 8px 0 0;font-size:12px}
        dl.kv{display:grid;grid-template-columns:110px minmax(0,1fr);gap:2px 8px;margin:0}
        dl.kv dt{color:var(--muted)}dl.kv dd{margin:0;word-break:break-all}
        pre{margin:0;padding:6px 8px;background:#f9fafb;border:1px solid var(--line);border-radius:4px;max-height:260px;overflow:auto;white-space:pre-wrap;word-break:break-all}
        pre.error{background:#fef2f2;border-color:#fecaca}
        .auth{max-width:420px;margin:24px auto 0;background:var(--card);border:1px solid var(--line);border-radius:6px;padding:14px 16px}
        .auth .row{display:flex;gap:6px}.auth input{flex:1}
        </style>
        </head>
        <body>
        <header>
          <h1>pq</h1><span class="sub">job queue</span>
          <span class="grow"></span>
          <button type="button" id="token-clear" class="ghost" hidden>forget token</button>
          <span id="live" class="live-connecting" title="event stream">connecting</span>
        </header>
        <section id="auth" class="auth" hidden>
          <form id="token-form" autocomplete="off">
            <h2>Access token</h2>
            <p class="muted">This server needs a token. It is kept in this tab's session storage only.</p>
            <div class="row"><input type="password" id="token-input" placeholder="token" autocomplete="off"><button type="submit" id="token-submit" class="primary">Unlock</button></div>
            <p id="token-error" class="msg error"></p>
          </form>
        </section>
        <datalist id="job-names"></datalist>
        <main>
          <section class="card c7" id="queues-card">
            <div class="card-head"><h2>Queues</h2><span class="grow"></span><span class="muted" id="queues-updated"></span></div>
            <table id="queues"><thead><tr><th>queue</th><th class="n">queued</th><th class="n">delayed</th><th class="n">retry</th><th class="n">started</th><th>depth, 5 min</th></tr></thead><tbody></tbody></table>
            <p class="msg" id="queues-msg"></p>
            <div class="throughput" id="throughput">
              <div><div class="big" id="throughput-rate">0.00/s</div><div class="muted" id="throughput-total">done, last minute</div></div>
              <div id="throughput-chart"></div>
            </div>
          </section>
          <section class="card c5" id="submit-card">
            <div class="card-head"><h2>Queue a task</h2></div>
            <form id="submit-form" novalidate autocomplete="off">
              <label for="submit-job">job</label><select id="submit-job"></select>
              <input id="submit-job-other" class="full" list="job-names" placeholder="job name" hidden>
              <span class="full muted" id="submit-hint"></span>
              <label for="submit-kwargs">kwargs</label><textarea id="submit-kwargs" rows="4" spellcheck="false">{}</textarea>
              <label for="submit-delay">delay / timeout</label>
              <div class="pair"><input id="submit-delay" type="number" min="0" step="any" placeholder="delay s"><input id="submit-timeout" type="number" min="0" step="any" placeholder="timeout s"></div>
              <label for="submit-queue">queue</label><input id="submit-queue" placeholder="the job's queue">
              <span></span><div><button type="submit" id="submit-button" class="primary">Queue</button></div>
              <p class="msg full" id="submit-msg"></p>
            </form>
          </section>
          <section class="card" id="tasks-card">
            <div class="card-head"><h2>Tasks</h2>
              <form id="task-filters" class="filters" autocomplete="off">
                <select id="filter-status" title="status"><option value="">any status</option><option>QUEUED</option><option>STARTED</option><option>RETRY</option><option>REVOKED</option><option>FAILURE</option><option>SUCCESS</option></select>
                <input id="filter-job" list="job-names" placeholder="job">
                <input id="filter-queue" placeholder="queue">
                <label class="muted">limit <input id="filter-limit" type="number" min="1" value="50"></label>
                <button type="submit" id="tasks-reload" title="reload">Reload</button>
              </form>
            </div>
            <p class="msg" id="tasks-msg"></p>
            <div class="scroll"><table id="tasks"><thead><tr><th>id</th><th>job</th><th>status</th><th>queue</th><th>kwargs</th><th>queued</th><th class="n">retry</th></tr></thead><tbody></tbody></table></div>
          </section>
          <section class="card c5" id="task-detail" hidden>
            <div class="card-head"><h2 id="detail-title">Task</h2><span class="grow"></span>
              <button type="button" id="revoke-btn" class="danger" disabled>Revoke</button>
              <button type="button" id="detail-close" class="ghost" title="close">✕</button></div>
            <p class="msg" id="revoke-msg"></p>
            <div id="detail-body"></div>
          </section>
          <section class="card" id="hosts-card">
            <div class="card-head"><h2>Hosts</h2></div>
            <p class="msg" id="hosts-msg"></p>
            <div class="scroll"><table id="hosts"><thead><tr><th>worker</th><th>state</th><th class="n">running</th><th class="n">processed</th><th>queues</th><th>isolation</th><th>last seen</th><th>processes: pid, state, tasks, RSS</th></tr></thead><tbody></tbody></table></div>
          </section>
          <section class="card c7" id="jobs-card">
            <div class="card-head"><h2>Jobs</h2></div>
            <p class="msg" id="jobs-msg"></p>
            <div class="scroll"><table id="jobs"><thead><tr><th>name</th><th>type</th><th>plugin</th><th>version</th><th>schedule</th><th>signature</th><th>doc</th></tr></thead><tbody></tbody></table></div>
          </section>
          <section class="card c5" id="events-card">
            <div class="card-head"><h2>Recent events</h2></div>
            <div class="scroll"><table id="events"><thead><tr><th>time</th><th>kind</th><th>task / plugin</th><th>status</th></tr></thead><tbody><tr class="empty"><td colspan="4">no events yet</td></tr></tbody></table></div>
          </section>
        </main>
        <script>
        'use strict';
        const $ = (id) => document.getElementById(id);
        const SVG_NS = 'http://www.w3.org/2000/svg';
        const TOKEN_KEY = 'pq_token';
        const STATUS_BY_NUM = {6: 'QUEUED', 5: 'STARTED', 4: 'RETRY', 3: 'REVOKED', 2: 'FAILURE', 1: 'SUCCESS'};
        const STATUSES = new Set(Object.values(STATUS_BY_NUM));
        const ACTIVE = new Set(['QUEUED', 'STARTED', 'RETRY']);
        const HOST_STATES = new Set(['running', 'ready', 'busy', 'starting', 'stopping', 'paused', 'stopped', 'dead', 'lost']);
        const TASK_EVENTS = new Set(['queued', 'started', 'retry', 'done']);
        const HISTORY_MS = 5 * 60 * 1000, BUCKET_MS = 5000, BUCKETS = 12, MAX_EVENTS = 100;

        // ---- DOM helpers: data only ever becomes text nodes or title/data-* attributes ----
        function el(tag, attrs, ...kids) {
          const e = document.createElement(tag);
          for (const [k, v] of Object.entries(attrs || {})) {
            if (v == null || v === false) continue;
            if (k === 'class') e.className = v;
            else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
            else e.setAttribute(k, v === true ? '' : String(v));
          }
          for (const c of kids.flat()) if (c != null) e.append(c instanceof Node ? c : String(c));
          return e;
        }
        function svg(tag, attrs) {
          const e = document.createElementNS(SVG_NS, tag);
          for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
          return e;
        }
        function say(id, content, isError) {
          const m = $(id);
          m.replaceChildren(...[].concat(content ?? []).filter((c) => c !== ''));
          m.classList.toggle('error', !!isError);
        }
        const emptyRow = (cols, text) => el('tr', {class: 'empty'}, el('td', {colspan: cols}, text));

        // ---- formatting ----
        const str = (v) => v == null ? '' : typeof v === 'string' ? v : typeof v === 'object' ? compact(v) : String(v);
        const disp = (v) => (v == null || v === '') ? '—' : str(v);
        const n0 = (v) => (typeof v === 'number' && isFinite(v)) ? v : 0;
        const trunc = (s, n) => s.length > n ? s.slice(0, n - 1) + '…' : s;
        const pad = (n, w = 2) => String(n).padStart(w, '0');
        const isTime = (t) => typeof t === 'number' && isFinite(t) && t > 0;
        function compact(v) { try { return JSON.stringify(v) ?? String(v); } catch { return String(v); } }
        function pretty(v) { try { return JSON.stringify(v, null, 2) ?? String(v); } catch { return String(v); } }
        function statusName(t) {
          const s = t && (t.status_string || STATUS_BY_NUM[t.status]);
          return s ? String(s) : '?';
        }
        function badge(text, known = STATUSES) {
          const s = String(text ?? '?');
          return el('span', {class: known.has(s) ? 'st st-' + s : 'st'}, s);
        }
        function hms(d) { return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`; }
        function shortTime(t) {
          if (!isTime(t)) return '—';
          const d = new Date(t * 1000);
          return d.toDateString() === new Date().toDateString() ? hms(d) : `${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${hms(d)}`;
        }
        function fullTime(t) {
          if (!isTime(t)) return '—';
          const d = new Date(t * 1000);
          return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${hms(d)}.${pad(d.getMilliseconds(), 3)}`;
        }
        function fmtDur(s) {
          if (typeof s !== 'number' || !isFinite(s)) return '—';
          s = Math.max(0, s);
          if (s < 1) return Math.round(s * 1000) + ' ms';
          if (s < 60) return s.toFixed(s < 10 ? 2 : 1) + ' s';
          const m = Math.floor(s / 60);
          if (m < 60) return `${m}m ${Math.floor(s % 60)}s`;
          return `${Math.floor(m / 60)}h ${m % 60}m`;
        }
        const secs = (v) => typeof v === 'number' ? fmtDur(v) : disp(v);
        const diff = (a, b) => isTime(a) && isTime(b) ? b - a : null;
        function ago(t) {
          if (!isTime(t)) return '—';
          const s = Math.max(0, Date.now() / 1000 - t);
          return s < 120 ? `${Math.round(s)}s ago` : fmtDur(s) + ' ago';
        }
        function countdown(at) {
          const s = (at - Date.now()) / 1000;
          return s < 0 ? 'due' : s < 120 ? `in ${Math.ceil(s)}s` : 'in ' + fmtDur(s);
        }
        function taskLink(id, full) {
          id = String(id ?? '');
          return el('button', {type: 'button', class: 'link mono', title: id, 'data-id': id, onclick: () => openDetail(id)}, full ? id : id.slice(0, 8));
        }

        // ---- API and token ----
        let authNeeded = false;
        const token = () => sessionStorage.getItem(TOKEN_KEY) || '';
        function authHeaders(h) {
          const t = token();
          if (t) h.Authorization = 'Bearer ' + t;
          return h;
        }
        class HttpError extends Error { constructor(status, msg) { super(msg); this.status = status; } }
        function needAuth(msg) {
          authNeeded = true;
          $('auth').hidden = false;
          $('token-error').textContent = token() ? 'The token was refused: ' + msg : msg;
          setLive('locked');
          if (document.activeElement !== $('token-input')) $('token-input').focus();
        }
        async function api(method, path, body) {
          const opts = {method, headers: authHeaders({Accept: 'application/json'}), cache: 'no-store'};
          if (method !== 'GET') { opts.headers['Content-Type'] = 'application/json'; opts.body = JSON.stringify(body ?? {}); }
          let res;
          try { res = await fetch(path, opts); } catch (e) { throw new HttpError(0, 'cannot reach the server: ' + e.message); }
          const text = await res.text();
          let data = null;
          try { data = text ? JSON.parse(text) : null; } catch { data = null; }
          const errText = data && data.error != null ? str(data.error) : null;
          if (res.status === 401) { needAuth(errText || 'authentication required'); throw new HttpError(401, errText || 'authentication required'); }
          if (!res.ok) throw new HttpError(res.status, errText || `HTTP ${res.status} ${res.statusText}`);
          return data;
        }
        async function guard(msgId, fn) {
          try { await fn(); if (msgId) say(msgId, ''); } catch (e) { if (msgId && e.status !== 401) say(msgId, e.message, true); }
        }
        function updateTokenButton() { $('token-clear').hidden = !token(); }
        $('token-form').addEventListener('submit', (ev) => {
          ev.preventDefault();
          const v = $('token-input').value.trim();
          if (!v) { $('token-error').textContent = 'Enter the token.'; return; }
          sessionStorage.setItem(TOKEN_KEY, v);
          $('token-input').value = '';
          authNeeded = false;
          $('auth').hidden = true;
          updateTokenButton();
          refreshAll();
          restartStream();
        });
        $('token-clear').addEventListener('click', () => {
          sessionStorage.removeItem(TOKEN_KEY);
          updateTokenButton();
          refreshAll();
          restartStream();
        });

        // ---- queues: depth sparklines and throughput ----
        const depthHistory = new Map();
        const doneBuckets = new Map();
        function sparkline(points) {
          const W = 120, H = 22, now = Date.now();
          const s = svg('svg', {width: W, height: H, viewBox: `0 0 ${W} ${H}`, class: 'spark'});
          const max = Math.max(1, ...points.map((p) => p.d));
          const xy = points.map((p) => [(W - (now - p.t) / HISTORY_MS * W).toFixed(1), (H - 2 - p.d / max * (H - 4)).toFixed(1)]);
          const title = svg('title');
          title.textContent = `depth ${points.length ? points[points.length - 1].d : 0} now, max ${max} in the last 5 minutes`;
          s.append(title, svg('line', {class: 'base', x1: 0, y1: H - 0.5, x2: W, y2: H - 0.5}));
          if (xy.length) {
            const line = xy.map((p) => p.join(',')).join(' ');
            s.append(svg('polygon', {class: 'area', points: `${xy[0][0]},${H} ${line} ${xy[xy.length - 1][0]},${H}`}),
                     svg('polyline', {class: 'line', points: line}),
                     svg('circle', {class: 'dot', cx: xy[xy.length - 1][0], cy: xy[xy.length - 1][1], r: 2}));
          }
          return s;
        }
        async function loadQueues() {
          const data = await api('GET', '/api/queues');
          const list = Array.isArray(data) ? data : [];
          const now = Date.now();
          for (const q of list) {
            const name = str(q.queue);
            if (!depthHistory.has(name)) depthHistory.set(name, []);
            const h = depthHistory.get(name);
            h.push({t: now, d: n0(q.queued) + n0(q.delayed) + n0(q.retry)});
            while (h.length && h[0].t < now - HISTORY_MS) h.shift();
          }
          const num = (v) => el('td', {class: 'n'}, disp(v));
          $('queues').tBodies[0].replaceChildren(...(list.length ? list.map((q) => el('tr', {'data-queue': str(q.queue)},
            el('td', {class: 'mono'}, str(q.queue)), num(q.queued), num(q.delayed), num(q.retry), num(q.started),
            el('td', null, sparkline(depthHistory.get(str(q.queue)) || [])))) : [emptyRow(6, 'no queues')]));
          $('queues-updated').textContent = 'updated ' + hms(new Date());
        }
        function countDone() {
          const k = Math.floor(Date.now() / BUCKET_MS);
          doneBuckets.set(k, (doneBuckets.get(k) || 0) + 1);
        }
        function renderThroughput() {
          const now = Date.now(), cur = Math.floor(now / BUCKET_MS);
          for (const k of doneBuckets.keys()) if (k <= cur - BUCKETS) doneBuckets.delete(k);
          const counts = [];
          for (let i = BUCKETS - 1; i >= 0; i--) counts.push(doneBuckets.get(cur - i) || 0);
          const total = counts.reduce((a, b) => a + b, 0);
          const span = ((BUCKETS - 1) * BUCKET_MS + (now - cur * BUCKET_MS)) / 1000;
          $('throughput-rate').textContent = (total / span).toFixed(2) + '/s';
          $('throughput-total').textContent = `${total} done in the last minute`;
          const W = 240, H = 40, bw = W / BUCKETS, max = Math.max(1, ...counts);
          const s = svg('svg', {width: W, height: H, viewBox: `0 0 ${W} ${H}`, class: 'bars'});
          counts.forEach((c, i) => {
            const h = c ? Math.max(2, c / max * (H - 4)) : 0;
            const bar = svg('rect', {class: 'bar', x: (i * bw + 1).toFixed(1), y: (H - 1 - h).toFixed(1), width: (bw - 2).toFixed(1), height: h.toFixed(1)});
            const t = svg('title');
            t.textContent = `${c} done, ${(BUCKETS - 1 - i) * 5}–${(BUCKETS - i) * 5} s ago`;
            bar.append(t);
            s.append(bar);
          });
          s.append(svg('line', {class: 'base', x1: 0, y1: H - 0.5, x2: W, y2: H - 0.5}));
          $('throughput-chart').replaceChildren(s);
        }

        // ---- tasks ----
        let tasksSeq = 0, tasksTimer = null, lastTasksLoad = 0, detailId = null, detailSeq = 0;
        function filters() {
          return {status: $('filter-status').value, job: $('filter-job').value.trim(), queue: $('filter-queue').value.trim(), limit: $('filter-limit').value.trim()};
        }
        function taskRow(t) {
          const id = str(t.id), kw = compact(t.kwargs ?? {});
          return el('tr', {'data-id': id, class: id === detailId ? 'sel' : null, tabindex: 0},
            el('td', {class: 'mono', title: id}, id.slice(0, 8)),
            el('td', null, str(t.name)),
            el('td', null, badge(statusName(t))),
            el('td', null, str(t.queue)),
            el('td', {class: 'mono kw', title: kw}, trunc(kw, 80)),
            el('td', {class: 'nowrap', title: fullTime(t.time_queued)}, shortTime(t.time_queued)),
            el('td', {class: 'n'}, disp(t.retry)));
        }
        async function loadTasks() {
          const seq = ++tasksSeq;
          lastTasksLoad = Date.now();
          // encodeURIComponent, not URLSearchParams: the server reads '+' as a plus, not a space.
          const qs = Object.entries(filters()).filter(([, v]) => v).map(([k, v]) => encodeURIComponent(k) + '=' + encodeURIComponent(v)).join('&');
          try {
            const data = await api('GET', '/api/tasks' + (qs ? '?' + qs : ''));
            if (seq !== tasksSeq) return;
            const list = Array.isArray(data) ? data : [];
            $('tasks').tBodies[0].replaceChildren(...(list.length ? list.map(taskRow) : [emptyRow(7, 'no tasks')]));
            say('tasks-msg', '');
          } catch (e) {
            if (seq === tasksSeq && e.status !== 401) say('tasks-msg', e.message, true);
          }
        }
        function scheduleTasksRefresh() {
          if (tasksTimer) return;
          tasksTimer = setTimeout(() => { tasksTimer = null; loadTasks(); }, Math.max(0, 500 - (Date.now() - lastTasksLoad)));
        }
        function matchesFilters(t) {
          const f = filters();
          return (!f.status || f.status === statusName(t)) && (!f.job || f.job === str(t.name)) && (!f.queue || f.queue === str(t.queue));
        }
        // A task event carries the whole task: its row is redrawn from it, with no reload (a reload
        // lists tasks, which on Redis scans the store; lists are reloaded on a filter change, after a
        // reconnect, and every 15 s).
        function updateRow(t) {
          const tb = $('tasks').tBodies[0], id = str(t.id);
          const row = [...tb.rows].find((r) => r.dataset.id === id);
          if (!row) return;
          if (matchesFilters(t)) row.replaceWith(taskRow(t)); else row.remove();
        }
        function insertQueued(t) {
          const tb = $('tasks').tBodies[0], id = str(t.id);
          if (!id || !matchesFilters(t) || [...tb.rows].some((r) => r.dataset.id === id)) return;
          tb.querySelector('tr.empty')?.remove();
          tb.prepend(taskRow(t));
          const limit = parseInt($('filter-limit').value, 10) || 50;
          while (tb.rows.length > limit) tb.lastElementChild.remove();
        }
        $('tasks').tBodies[0].addEventListener('click', (ev) => {
          const tr = ev.target.closest('tr[data-id]');
          if (tr) openDetail(tr.dataset.id);
        });
        $('tasks').tBodies[0].addEventListener('keydown', (ev) => {
          const tr = ev.target.closest('tr[data-id]');
          if (tr && ev.key === 'Enter') openDetail(tr.dataset.id);
        });
        let filterTimer = null;
        $('task-filters').addEventListener('submit', (ev) => { ev.preventDefault(); loadTasks(); });
        $('task-filters').addEventListener('input', () => { clearTimeout(filterTimer); filterTimer = setTimeout(loadTasks, 300); });

        // ---- task detail ----
        const KNOWN_FIELDS = new Set(['id', 'name', 'status', 'status_string', 'queue', 'kwargs', 'result', 'exception', 'time_queued', 'time_started',
          'time_ended', 'delay', 'timeout', 'expiry', 'retry', 'max_retries', 'from_task', 'node', 'worker', 'plugin', 'plugin_version']);
        async function openDetail(id) {
          if (id !== detailId) say('revoke-msg', '');
          detailId = id;
          for (const r of $('tasks').tBodies[0].rows) r.classList.toggle('sel', r.dataset.id === id);
          $('task-detail').hidden = false;
          $('detail-title').textContent = 'Task ' + id.slice(0, 8);
          await loadDetail();
          $('task-detail').scrollIntoView({block: 'nearest'});
        }
        async function loadDetail(fallback) {
          const id = detailId, seq = ++detailSeq;
          if (!id) return;
          try {
            const t = await api('GET', '/api/tasks/' + encodeURIComponent(id));
            if (seq === detailSeq && id === detailId) renderDetail(t || {});
          } catch (e) {
            if (seq !== detailSeq || id !== detailId) return;
            if (fallback) renderDetail(fallback);
            else if (e.status !== 401) { $('detail-body').replaceChildren(el('p', {class: 'msg error'}, e.message)); $('revoke-btn').disabled = true; }
          }
        }
        function renderDetail(t) {
          const st = statusName(t), id = str(t.id) || detailId;
          $('detail-title').textContent = 'Task ' + id.slice(0, 8);
          $('revoke-btn').disabled = !ACTIVE.has(st);
          const kv = (label, ...value) => [el('dt', null, label), el('dd', null, ...value)];
          const expiry = typeof t.expiry === 'number' && t.expiry > 1e9 ? fullTime(t.expiry) : secs(t.expiry);
          const extra = Object.keys(t).filter((k) => !KNOWN_FIELDS.has(k)).flatMap((k) => kv(k, el('span', {class: 'mono'}, compact(t[k]))));
          const body = [el('dl', {class: 'kv'},
            kv('id', el('span', {class: 'mono'}, id)),
            kv('job', str(t.name)),
            kv('status', badge(st), t.status != null ? ` (${str(t.status)})` : ''),
            kv('queue', disp(t.queue)),
            kv('queued', fullTime(t.time_queued)),
            kv('started', fullTime(t.time_started)),
            kv('ended', fullTime(t.time_ended)),
            kv('waited / ran', `${fmtDur(diff(t.time_queued, t.time_started))} / ${fmtDur(diff(t.time_started, t.time_ended))}`),
            kv('total', fmtDur(diff(t.time_queued, t.time_ended))),
            kv('retry', `${disp(t.retry)} of ${disp(t.max_retries)}`),
            kv('timeout', secs(t.timeout)),
            kv('delay', secs(t.delay)),
            kv('expiry', expiry),
            kv('plugin', t.plugin != null ? `${str(t.plugin)} ${str(t.plugin_version)}`.trim() : '—'),
            kv('host', disp(t.node)),
            kv('worker', disp(t.worker)),
            kv('from task', t.from_task ? taskLink(t.from_task, true) : '—'),
            extra),
            el('h3', null, 'kwargs'), el('pre', {id: 'detail-kwargs'}, pretty(t.kwargs ?? {}))];
          if (t.exception != null) body.push(el('h3', null, 'exception'), el('pre', {id: 'detail-exception', class: 'error'}, str(t.exception)));
          if (t.result != null || t.exception == null) body.push(el('h3', null, 'result'), el('pre', {id: 'detail-result'}, t.result == null ? 'null' : pretty(t.result)));
          $('detail-body').replaceChildren(...body);
        }
        $('detail-close').addEventListener('click', () => {
          detailId = null;
          $('task-detail').hidden = true;
          for (const r of $('tasks').tBodies[0].rows) r.classList.remove('sel');
        });
        $('revoke-btn').addEventListener('click', async () => {
          const id = detailId;
          if (!id) return;
          $('revoke-btn').disabled = true;
          say('revoke-msg', 'revoking…');
          try {
            const r = await api('POST', `/api/tasks/${encodeURIComponent(id)}/revoke`, {});
            const o = r && r.outcome;
            if (id === detailId) say('revoke-msg', o === 'revoked' ? 'revoked' : o === 'cancel_requested' ? 'cancel requested: the running task will be stopped' : 'outcome: ' + disp(o));
          } catch (e) {
            if (id === detailId) say('revoke-msg', e.message, true);
          }
          if (id === detailId) loadDetail();
          scheduleTasksRefresh();
        });

        // ---- jobs and schedule ----
        let jobs = [], schedule = new Map(), jobsTimer = null;
        function everyText(v) { return typeof v === 'number' ? 'every ' + fmtDur(v) : 'every ' + str(v); }
        function scheduleCell(j) {
          const o = j.options && typeof j.options === 'object' ? j.options : {};
          const s = schedule.get(str(j.name));
          let text = s && s.schedule != null ? str(s.schedule) : '';
          if (!text && o.cron != null) text = 'cron ' + str(o.cron) + (o.timezone ? ` (${str(o.timezone)})` : '');
          if (!text && o.run_every != null) text = everyText(o.run_every);
          const td = el('td', {class: 'nowrap'}, text || (s ? '' : '—'));
          if (s && s.at != null) td.append(text ? ' · next ' : 'next ', el('span', {class: 'countdown', 'data-at': s.at}, countdown(s.at)));
          return td;
        }
        function renderJobs() {
          $('jobs').tBodies[0].replaceChildren(...(jobs.length ? jobs.map((j) => el('tr', {'data-name': str(j.name)},
            el('td', {class: 'mono', title: j.options ? 'options ' + compact(j.options) : null}, str(j.name)),
            el('td', null, disp(j.type)), el('td', null, disp(j.plugin)), el('td', null, disp(j.plugin_version)),
            scheduleCell(j),
            el('td', {class: 'mono kw'}, disp(j.signature)),
            el('td', {title: str(j.doc)}, trunc(str(j.doc), 160)))) : [emptyRow(7, 'no jobs')]));
        }
        async function loadJobs() {
          const data = await api('GET', '/api/jobs');
          jobs = (Array.isArray(data) ? data : []).slice().sort((a, b) =>
            ((a.type === 'periodic') - (b.type === 'periodic')) || str(a.name).localeCompare(str(b.name)));
          renderJobs();
          fillJobSelect();
        }
        async function loadSchedule() {
          const data = await api('GET', '/api/schedule');
          const now = Date.now();
          schedule = new Map();
          for (const s of Array.isArray(data) ? data : []) {
            const at = typeof s.in_seconds === 'number' ? now + s.in_seconds * 1000 : isTime(s.next_run) ? s.next_run * 1000 : null;
            schedule.set(str(s.name), {schedule: s.schedule, at});
          }
          renderJobs();
        }
        function scheduleJobsRefresh() {
          clearTimeout(jobsTimer);
          jobsTimer = setTimeout(() => { guard('jobs-msg', loadJobs); guard('jobs-msg', loadSchedule); }, 500);
        }

        // ---- queue-a-task form ----
        let pickedOther = false;
        function fillJobSelect() {
          const sel = $('submit-job'), keep = sel.value;
          const groups = [['regular', jobs.filter((j) => j.type !== 'periodic')], ['periodic', jobs.filter((j) => j.type === 'periodic')]];
          sel.replaceChildren(...groups.filter(([, l]) => l.length).map(([label, l]) =>
            el('optgroup', {label}, l.map((j) => el('option', {value: str(j.name)}, str(j.name))))), el('option', {value: ''}, 'other…'));
          if ((keep || pickedOther) && [...sel.options].some((o) => o.value === keep)) sel.value = keep;
          else sel.selectedIndex = 0;
          $('job-names').replaceChildren(...jobs.map((j) => el('option', {value: str(j.name)})));
          jobChanged(false);
        }
        function kwargsTemplate(sig) {
          const m = /^\s*\(([^)]*)\)/.exec(str(sig));
          if (!m || !m[1].trim()) return '{}';
          const o = {};
          for (const p of m[1].split(',')) {
            const [name, type = ''] = p.split(':').map((x) => x.trim());
            if (name) o[name] = /int|float|double|num/i.test(type) ? 0 : /bool/i.test(type) ? false : /str/i.test(type) ? '' : null;
          }
          return JSON.stringify(o);
        }
        let lastTemplate = '{}';
        function jobChanged(userChange) {
          const sel = $('submit-job'), other = !sel.value;
          if (userChange) pickedOther = other;
          $('submit-job-other').hidden = !other;
          const j = jobs.find((x) => str(x.name) === sel.value);
          const o = j && j.options && typeof j.options === 'object' ? j.options : {};
          $('submit-hint').textContent = j ? [j.signature && str(j.signature), o.queue != null && 'queue ' + str(o.queue), j.doc && trunc(str(j.doc), 120)].filter(Boolean).join(' · ') : '';
          const ta = $('submit-kwargs');
          if (['', '{}', lastTemplate].includes(ta.value.trim())) { lastTemplate = j ? kwargsTemplate(j.signature) : '{}'; ta.value = lastTemplate; }
        }
        $('submit-job').addEventListener('change', () => jobChanged(true));
        $('submit-form').addEventListener('submit', async (ev) => {
          ev.preventDefault();
          const sel = $('submit-job');
          const job = (sel.value || $('submit-job-other').value).trim();
          if (!job) return say('submit-msg', 'Choose or type a job name.', true);
          let kwargs;
          try { kwargs = JSON.parse($('submit-kwargs').value.trim() || '{}'); } catch (e) { return say('submit-msg', 'kwargs is not valid JSON: ' + e.message, true); }
          if (!kwargs || typeof kwargs !== 'object' || Array.isArray(kwargs)) return say('submit-msg', 'kwargs must be a JSON object, like {"a": 1}.', true);
          const body = {job, kwargs};
          for (const k of ['delay', 'timeout']) {
            const v = $('submit-' + k).value.trim();
            if (!v) continue;
            const n = Number(v);
            if (!isFinite(n) || n < 0) return say('submit-msg', `${k} must be a number of seconds, 0 or more.`, true);
            body[k] = n;
          }
          const q = $('submit-queue').value.trim();
          if (q) body.queue = q;
          $('submit-button').disabled = true;
          say('submit-msg', 'queueing…');
          try {
            const t = await api('POST', '/api/tasks', body);
            say('submit-msg', ['queued ', taskLink(t && t.id, true)]);
            if (t && t.id) insertQueued(t);
          } catch (e) {
            say('submit-msg', e.message, true);
          } finally {
            $('submit-button').disabled = false;
          }
        });

        // ---- hosts ----
        function workersCell(ws) {
          if (!Array.isArray(ws) || !ws.length) return '—';
          return el('table', {class: 'sub'}, el('tbody', null, ws.map((w) => el('tr', null,
            el('td', {class: 'mono'}, disp(w.pid)), el('td', null, badge(w.state, HOST_STATES)), el('td', {class: 'n'}, `${disp(w.tasks)} tasks`),
            el('td', {class: 'n'}, typeof w.rss_kb === 'number' ? (w.rss_kb / 1024).toFixed(1) + ' MiB' : '—')))));
        }
        async function loadHosts() {
          const data = await api('GET', '/api/hosts');
          const list = Array.isArray(data) ? data : [];
          $('hosts').tBodies[0].replaceChildren(...(list.length ? list.map((h) => el('tr', {'data-worker': str(h.worker)},
            el('td', {class: 'mono', title: h.node != null ? 'node ' + str(h.node) : null}, disp(h.worker)),
            el('td', null, badge(h.state, HOST_STATES)),
            el('td', {class: 'n', title: Array.isArray(h.running_tasks) && h.running_tasks.length ? h.running_tasks.map(str).join('\n') : null}, `${disp(h.running)} / ${disp(h.concurrent_tasks)}`),
            el('td', {class: 'n'}, disp(h.processed)),
            el('td', {title: h.jobs != null ? `${str(h.jobs)} jobs` : null}, Array.isArray(h.queues) ? h.queues.map(str).join(', ') : 'all'),
            el('td', null, disp(h.isolation)),
            el('td', {class: 'nowrap ago', 'data-t': isTime(h.time) ? h.time : null}, ago(h.time)),
            el('td', null, workersCell(h.workers)))) : [emptyRow(8, 'no hosts')]));
        }

        // ---- events stream ----
        function addEventRow(kind, data) {
          const tb = $('events').tBodies[0];
          tb.querySelector('tr.empty')?.remove();
          let subject = '', status = '';
          if (data.task && typeof data.task === 'object') {
            const t = data.task;
            subject = [taskLink(t.id), ' ', str(t.name)];
            status = badge(statusName(t));
          } else if (data.plugin && typeof data.plugin === 'object') {
            const p = data.plugin;
            subject = el('span', {title: str(p.path)}, p.name != null ? `${str(p.name)} ${str(p.version)}`.trim() : trunc(str(p.path), 60));
            status = p.error != null ? el('span', {class: 'error', title: str(p.error)}, trunc(str(p.error), 80))
              : Array.isArray(p.jobs) ? `${p.jobs.length} jobs` + (p.node != null ? ' on ' + str(p.node) : '') : disp(p.node);
          } else if (data.worker && typeof data.worker === 'object') {
            const w = data.worker;
            subject = el('span', {class: 'mono', title: compact(w)}, disp(w.worker ?? w.pid));
            status = disp(w.state);
          }
          tb.prepend(el('tr', {'data-kind': kind}, el('td', {class: 'nowrap'}, hms(new Date())), el('td', null, kind), el('td', null, subject), el('td', null, status)));
          while (tb.rows.length > MAX_EVENTS) tb.lastElementChild.remove();
        }
        function handleEvent(kind, data) {
          addEventRow(kind, data);
          if (TASK_EVENTS.has(kind) && data.task && typeof data.task === 'object') {
            const t = data.task;
            if (kind === 'done') { countDone(); renderThroughput(); }
            if (kind === 'queued') insertQueued(t); else updateRow(t);
            if (detailId && str(t.id) === detailId && kind !== 'queued') loadDetail(t);
          } else if (kind.startsWith('plugin_')) {
            scheduleJobsRefresh();
          } else if (kind === 'worker_lost') {
            guard('hosts-msg', loadHosts);
          }
        }
        function parseBlock(block) {
          let kind = '';
          const data = [];
          for (const line of block.split('\n')) {
            if (!line || line.startsWith(':')) continue;
            const c = line.indexOf(':');
            const field = c < 0 ? line : line.slice(0, c);
            let v = c < 0 ? '' : line.slice(c + 1);
            if (v.startsWith(' ')) v = v.slice(1);
            if (field === 'event') kind = v;
            else if (field === 'data') data.push(v);
          }
          if (!data.length) return;
          let obj;
          try { obj = JSON.parse(data.join('\n')); } catch { return; }
          if (obj && typeof obj === 'object') handleEvent(kind || str(obj.event) || 'message', obj);
        }
        const LIVE_TEXT = {live: 'live', connecting: 'connecting', reconnecting: 'reconnecting', locked: 'locked'};
        function setLive(state) { $('live').textContent = LIVE_TEXT[state]; $('live').className = 'live-' + state; }
        const sleep = (ms, signal) => new Promise((r) => {
          const t = setTimeout(r, ms);
          signal.addEventListener('abort', () => { clearTimeout(t); r(); }, {once: true});
        });
        let streamCtrl = null;
        function restartStream() { if (streamCtrl) streamCtrl.abort(); }
        async function streamLoop() {
          let backoff = 1000, opened = false;
          for (;;) {
            const ctrl = new AbortController();
            streamCtrl = ctrl;
            if (authNeeded) { setLive('locked'); await sleep(3600e3, ctrl.signal); continue; }
            try {
              setLive(opened ? 'reconnecting' : 'connecting');
              const res = await fetch('/api/events', {headers: authHeaders({Accept: 'text/event-stream'}), cache: 'no-store', signal: ctrl.signal});
              if (res.status === 401) {
                let m = 'authentication required';
                try { const j = await res.json(); if (j && j.error) m = str(j.error); } catch {}
                needAuth(m);
                continue;
              }
              if (!res.ok || !res.body) throw new Error('HTTP ' + res.status);
              setLive('live');
              if (opened) { scheduleTasksRefresh(); if (detailId) loadDetail(); }
              opened = true;
              backoff = 1000;
              const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
              let buf = '';
              for (;;) {
                const {value, done} = await reader.read();
                if (done) break;
                buf = (buf + value).replace(/\r\n/g, '\n');
                let i;
                while ((i = buf.indexOf('\n\n')) >= 0) { const block = buf.slice(0, i); buf = buf.slice(i + 2); parseBlock(block); }
              }
            } catch (e) { /* reconnect below */ }
            if (ctrl.signal.aborted) { backoff = 1000; continue; }
            setLive('reconnecting');
            await sleep(backoff, ctrl.signal);
            backoff = Math.min(backoff * 2, 10000);
          }
        }

        // ---- start ----
        function every(ms, fn) {
          const run = async () => { if (!authNeeded) await fn(); setTimeout(run, ms); };
          run();
        }
        function refreshAll() {
          guard('queues-msg', loadQueues);
          guard('hosts-msg', loadHosts);
          guard('jobs-msg', loadJobs).then(() => guard('jobs-msg', loadSchedule));
          loadTasks();
          if (detailId) loadDetail();
        }
        setInterval(() => {
          for (const e of document.querySelectorAll('.ago[data-t]')) e.textContent = ago(Number(e.dataset.t));
          for (const e of document.querySelectorAll('.countdown[data-at]')) e.textContent = countdown(Number(e.dataset.at));
          renderThroughput();
        }, 1000);
        updateTokenButton();
        fillJobSelect();
        renderThroughput();
        loadTasks();
        every(2000, () => guard('queues-msg', loadQueues));
        every(5000, () => guard('hosts-msg', loadHosts));
        every(10000, () => guard('jobs-msg', loadSchedule));
        every(60000, () => guard('jobs-msg', loadJobs));
        every(15000, async () => { if (Date.now() - lastTasksLoad > 10000) await loadTasks(); });
        streamLoop();
        </script>
        </body>
        </html>
        """#
}
