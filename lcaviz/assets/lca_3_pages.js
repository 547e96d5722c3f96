/* lcaviz player, part 3 of 3: the run page and the compare page (see lca_1_view.js), and the
 * clientside callbacks that hand them the server's streams.
 */
(function () {
  'use strict';

  var L = window.lcaviz, fmt = L.fmt, intFmt = L.intFmt, View = L.View, Player = L.Player;
  var players = L.players;

  function runPlayer() {
    var p = players.run;
    if (!p) {
      p = players.run = new Player({syncId: 'run-frame', markerGraphs: ['run-loss', 'run-residual',
                                    'run-layer-curves', 'run-help-time', 'run-ex-detail'],
                                    onUpdate: runInfo});
      var view = new View('run-heatmap', function (v) { p.onFrameData(v); });
      view.onZoom = function (ev) {  // a box zoom or a reset: the server plans the region
        var keys = Object.keys(ev || {});
        if (!keys.some(function (k) { return /^[xy]axis\.(range|autorange)/.test(k); })) return;
        if (window.dash_clientside && window.dash_clientside.set_props) {
          window.dash_clientside.set_props('run-zoom-request', {data: Object.assign({_at: Date.now()}, ev)});
        }
      };
      view.onPick = function (d) {
        if (window.dash_clientside && window.dash_clientside.set_props) {
          window.dash_clientside.set_props('run-drill-param', {data: {
            flat: d.flat, label: d.label, block: d.block, tensor: d.tensor, index: d.index}});
        }
      };
      p.views.push(view);
    }
    return p;
  }
  // the view (layer, frame mode, iteration) in the page's URL, so that a copied link reopens
  // it (run.py reads them back); at most once a second while playing
  function writeUrl(p) {
    var v = p.views[0];
    if (!v || !v.stream || !v.stream.run || v.stream.error) return;
    var now = performance.now();
    if (p.playing && now - (p.lastUrl || 0) < 1000) return;
    p.lastUrl = now;
    var q = new URLSearchParams(location.search);
    if (q.get('id') !== v.stream.run) return;  // not this run's page (or its /run/<id> form)
    q.set('layer', v.stream.layer_name); q.set('mode', v.stream.mode);
    q.set('it', String(p.iteration()));
    var href = location.pathname + '?' + q.toString();
    if (href === location.pathname + location.search) return;
    history.replaceState(history.state, '', href);
    if (pageJobs) pageJobs.href = href;
  }
  // the iteration a link asks for (?it=), once per run opened
  function urlIteration(run) {
    var q = new URLSearchParams(location.search), it = q.get('it');
    return q.get('id') === run && it !== null && /^[0-9]+$/.test(it) ? parseInt(it, 10) : null;
  }
  function runInfo(p) {
    writeUrl(p);
    if (L.examples) L.examples.frame(p);  // the Examples section (lca_4_examples.js)
    var v = p.views[0], title = document.getElementById('run-heatmap-title');
    var info = document.getElementById('run-heatmap-info');
    if (!v || !v.stream) return;
    var s = v.stream;
    if (s.error) {  // the run cannot be read: the card says why, nothing here is current
      if (title) title.textContent = '';
      if (info) info.textContent = '';
      return;
    }
    if (!s.has_rows) {  // a layer stored without per-parameter rows: say so plainly
      if (title) title.textContent = s.layer_name + ' — per-layer LCA only';
      if (info) info.textContent = s.note || '';
      return;
    }
    // the mode's own words once ("cumulative LCA, iterations 0–9", not "…, cumulative, …")
    var what = p.label().split(' · ')[0].replace(/^(cumulative|window sum), /, '');
    var part = s.group ? ' · ' + s.group_label : '';
    if (title) title.textContent = s.layer_name + part + ' — ' + ({row: 'LCA', cumulative: 'cumulative LCA', window: 'window sum of LCA'}[s.mode]) + ', ' + what;
    if (info && !v.frame) info.textContent = '';
    if (info && v.frame) {
      var blocks = v.stream.items.filter(function (it) { return it.by !== 1 || it.bx !== 1; });
      var total = s.group && s.group_totals ? s.group_totals[v.shown] : v.frame.total;
      var size = s.group ? intFmt(s.group_size) + ' parameters in ' + s.group_label + ' (of ' +
        intFmt(s.layer_size) + ' in the layer) · ' + s.group_label + ' LCA ' :
        intFmt(s.layer_size) + ' parameters · layer LCA ';
      info.textContent = size + fmt(total) +
        ' · colour range ±' + fmt(v.zmax()) + ' (' + (s.range_mode === 'manual' && s.zmax > 0 ? 'manual' :
          (s.range_mode === 'frame' || !(s.zmax > 0) ? 'this frame' : 'fixed over run') + ', 99.5th percentile of |LCA|') + ')' +
        (blocks.length ? ' · block sums ' + blocks.map(function (it) { return it.by + '×' + it.bx; }).join(', ') +
         ': each cell is the exact sum of its block; zoom in (drag a box) or choose full resolution for single parameters' : '');
    }
  }

  // the compare page: one player, one view per run (hosts cmp-heat-K)
  function comparePlayer() {
    if (!players.cmp) {
      players.cmp = new Player({syncId: 'cmp-frame', markerGraphs: ['cmp-loss', 'cmp-help'],
                                markerX: function (p) { return p.timeline[p.index]; },
                                label: compareLabel, onUpdate: compareTitles});
    }
    return players.cmp;
  }
  function span(a, e) { return e - a <= 1 ? 'it. ' + intFmt(a) : 'it. ' + intFmt(a) + '–' + intFmt(e - 1); }
  function viewSpan(p, v, k, rows) {
    if (!v.stream || !v.stream.R || rows[k] < 0) return null;
    var w = v.window(rows[k]);
    return v.stream.mode === 'cumulative' ? span(0, w[1]) : span(w[0], w[1]);
  }
  function compareLabel(p) {
    var rows = p.rowsFor(p.index), x = p.timeline[p.index];
    var head = p.axis === 'fraction' ? (100 * x).toFixed(1) + ' % of training' : 'iteration ' + intFmt(x);
    var parts = p.views.map(function (v, k) {
      var sp = viewSpan(p, v, k, rows);
      return sp && v.stream.run ? v.stream.run.split('/').pop() + ': ' + sp : null;
    }).filter(Boolean);
    return head + ' — ' + parts.join(' · ') + ' · frame ' + intFmt(p.index + 1) + ' of ' + intFmt(p.timeline.length);
  }
  function compareTitles(p) {
    var rows = p.rowsFor(p.index);
    p.views.forEach(function (v, k) {
      var el = document.getElementById('cmp-heat-' + k + '-title');
      if (!el || !v.stream) return;
      var sp = viewSpan(p, v, k, rows);
      var s = v.stream, range = v.frame ? ' · colour ±' + fmt(v.zmax()) +
        (s.per_iteration ? ' per iteration' : '') + (s.scale_note === 'shared' ? ' (shared by all runs)' : ' (this run’s own)') : '';
      el.textContent = s.error ? '' : s.layer_name + ' — ' +
        (s.mode === 'cumulative' ? 'cumulative LCA, ' : 'LCA, ') + (sp || '') + range;
    });
  }

  // let the other panels of the run page start once the heatmap is on screen (or can't be)
  var panelsFor = null;  // the run whose panels were let through (once per page)
  function panelsWhenPainted(view, run) {
    var host = document.getElementById('run-panels');
    if (panelsFor === run && host && host.children.length) return;
    panelsFor = run;
    var start = performance.now();
    (function check() {
      var done = view.paints > 0 || view.error || !view.stream || !view.stream.has_rows ||
        !view.stream.R || performance.now() - start > 3000;
      if (!done) { setTimeout(check, 30); return; }
      if (window.dash_clientside && window.dash_clientside.set_props) {
        window.dash_clientside.set_props('run-panels-ready', {data: run});
      }
    })();
  }

  // the run page's background jobs belong to this visit of it (its token): leaving it (a link,
  // back / forward, closing or reloading the tab) tells the server to cancel them, so the
  // next page's jobs do not queue behind analyses nobody is waiting for
  var pageJobs = null;  // {token, href}
  function cancelPageJobs() {
    if (!pageJobs) return;
    var url = '/lcaviz/jobs/cancel?owner=' + encodeURIComponent(pageJobs.token);
    pageJobs = null;
    if (navigator.sendBeacon) navigator.sendBeacon(url);
    else fetch(url, {method: 'POST', keepalive: true});
  }
  function leftPage() {
    if (pageJobs && location.pathname + location.search !== pageJobs.href) cancelPageJobs();
  }
  window.addEventListener('_dashprivate_pushstate', function () { setTimeout(leftPage, 0); });
  window.addEventListener('popstate', leftPage);
  window.addEventListener('pagehide', cancelPageJobs);

  // clientside callbacks (wired in lcaviz/app/pages/run_callbacks.py)
  window.dash_clientside = Object.assign({}, window.dash_clientside, {
    lcaviz: {
      runStream: function (stream) {
        var p = runPlayer();
        if (!stream) return window.dash_clientside.no_update;
        p.buildBar(document.getElementById('run-player-bar'));
        var view = p.views[0], fresh = !view.stream || view.stream.key !== stream.key;
        var sameRun = view.stream && view.stream.run === stream.run;
        var t = sameRun ? p.iteration() : (urlIteration(stream.run) || 0);
        view.configure(stream);
        p.rebuildTimeline();
        if (fresh) {  // same iteration in the new stream (e.g. another layer)
          var i = 0, tl = p.timeline;
          while (i + 1 < tl.length && tl[i + 1] <= t) i++;
          p.index = i;
        }
        p.show(p.index);
        panelsWhenPainted(view, stream.run);
        return window.dash_clientside.no_update;
      },
      compareStreams: function (streams, axis) {
        if (!streams) return window.dash_clientside.no_update;
        var p = comparePlayer(), t = p.iteration();
        p.views = streams.map(function (s, k) {
          var id = 'cmp-heat-' + k, old = p.views[k];
          var v = old && old.hostId === id ? old : new View(id, function (vv) { p.onFrameData(vv); });
          v.configure(s);
          return v;
        });
        var axisChanged = p.axis !== (axis || 'fraction');
        p.axis = axis || 'fraction';
        p.buildBar(document.getElementById('cmp-player-bar'));
        p.rebuildTimeline();
        p.index = axisChanged ? p.indexOfIteration(t) : Math.min(p.index, p.timeline.length - 1);
        p.show(p.index);
        p.markers();
        return window.dash_clientside.no_update;
      },
      // the bars' scope is read from the page: its radio mounts with the panels, after the
      // frame store, and a State of it would be "a nonexistent object" until then
      frameGate: function (frame, drillParam) {
        var nu = window.dash_clientside.no_update;
        var checked = document.querySelector('#run-bars-scope input:checked');
        var barsScope = checked ? checked.value : 'total';
        return [barsScope === 'upto' ? frame : nu, drillParam ? frame : nu];
      },
      palette: function (name) {
        if (name && L.palette() !== name) {
          L.setPalette(name);
          Object.keys(players).forEach(function (k) {
            players[k].views.forEach(function (v) { v.draw(); });
          });
        }
        return window.dash_clientside.no_update;
      },
      pageJobs: function (token) {
        if (pageJobs && pageJobs.token !== token) cancelPageJobs();  // another visit's
        if (token) pageJobs = {token: token, href: location.pathname + location.search};
        return window.dash_clientside.no_update;
      },
      panelsMeta: function (meta, ready, runId) {
        return meta && ready && ready === runId ? meta : window.dash_clientside.no_update;
      },
    },
  });
})();
