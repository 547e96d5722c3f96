/* lcaviz player, part 4: the run page's "Examples" section (issue 24).
 *
 * Follows the player's frame in the browser. The server sends a stream once per run / scope /
 * k (lcaviz/app/examples.py) and answers GET /lcaviz/examples with blocks of `stream.block`
 * rows: per row the top-k helped / hurt examples in the row and cumulatively up to it, both
 * histograms by class, and the renderings of the examples named. Blocks are cached here, the
 * next one is fetched before the player reaches it, so a frame costs no request once its block
 * is cached and at most one bounded request per block otherwise. Every string from the
 * bundle is set as text (textContent), never as HTML. A stream is of one split (training or
 * validation examples) and, when the player sums the last W rows, of that window: the "this
 * frame" lists and histogram then show the frame's window sums, as the player does.
 */
(function () {
  'use strict';

  var L = window.lcaviz, fmt = L.fmt, intFmt = L.intFmt;
  var LEGEND_MAX = 20;  // more classes than this: one line instead of a swatch per class
  // cached blocks, least recently shown dropped first: each holds its frames and the renderings
  // of the examples they name (a few KB to ~0.3 MB), so the page keeps at most ~20 MB
  var MAX_BLOCKS = 64;
  var HIST_MS_PLAYING = 150;   // histogram redraws while playing, at most this often
  var LISTS = [['row', 'helped', 'this frame · helped most'],
               ['row', 'hurt', 'this frame · hurt most'],
               ['cumulative', 'helped', 'cumulative up to t · helped most'],
               ['cumulative', 'hurt', 'cumulative up to t · hurt most']];

  function Examples() {
    this.stream = null; this.blocks = new Map(); this.pending = new Set();
    this.row = -1; this.paints = 0; this.requests = 0; this.error = '';
    this.histMode = 'row'; this.histLog = false; this.lastHist = 0; this.histTimer = null;
    this.selected = null;
  }
  Examples.prototype.configure = function (stream, histMode, histLog) {
    var fresh = !this.stream || !stream || this.stream.key !== stream.key;
    this.stream = stream;
    this.histMode = histMode || 'row'; this.histLog = !!histLog;
    if (fresh) {
      this.blocks = new Map(); this.pending = new Set(); this.row = -1; this.shownRow = -1;
      this.error = stream && stream.error ? stream.error : '';
      this.build();
    }
    this.update(true);
  };
  Examples.prototype.host = function () { return document.getElementById('run-ex-grid'); };
  // the strips: one per list, k cells each, made once per stream and then only updated
  Examples.prototype.build = function () {
    var host = this.host(), s = this.stream, self = this;
    if (!host) return;
    host.textContent = '';
    this.cells = [];
    if (!s || s.error) {
      var p = document.createElement('p');
      p.className = s && s.error ? 'error-text' : 'muted small';
      p.textContent = s && s.error ? s.error : '';
      host.appendChild(p);
      return;
    }
    LISTS.forEach(function (spec) {
      var strip = document.createElement('div'), label = document.createElement('div');
      strip.className = 'ex-strip'; strip.dataset.list = spec[0] + '-' + spec[1];
      label.className = 'ex-label ' + (spec[1] === 'helped' ? 'ex-help' : 'ex-hurt');
      label.textContent = spec[0] === 'row' && s.window > 1 ?
        'last ' + intFmt(s.window) + ' rows · ' + spec[2].split(' · ')[1] : spec[2];
      strip.appendChild(label);
      var cells = [];
      for (var j = 0; j < s.k; j++) {
        var cell = document.createElement('button');
        cell.type = 'button'; cell.className = 'ex-cell';
        var img = document.createElement('img'), txt = document.createElement('div');
        var cap = document.createElement('div'), val = document.createElement('div');
        img.className = 'ex-thumb'; img.alt = ''; txt.className = 'ex-text';
        cap.className = 'ex-cap'; val.className = 'ex-val';
        cell.appendChild(img); cell.appendChild(txt); cell.appendChild(cap); cell.appendChild(val);
        cell.addEventListener('click', function () { self.pick(this); });
        strip.appendChild(cell);
        cells.push({el: cell, img: img, txt: txt, cap: cap, val: val});
      }
      self.cells.push(cells);
      host.appendChild(strip);
    });
  };
  Examples.prototype.pick = function (el) {
    var pos = el.dataset.pos;
    if (pos === undefined || pos === '') return;
    this.selected = parseInt(pos, 10);
    this.markSelected();
    if (window.dash_clientside && window.dash_clientside.set_props) {
      window.dash_clientside.set_props('run-ex-selected', {data: {
        pos: this.selected, index: parseInt(el.dataset.index, 10),
        split: (this.stream && this.stream.split) || 'train'}});
    }
  };
  Examples.prototype.markSelected = function () {
    var sel = this.selected;
    (this.cells || []).forEach(function (cells) {
      cells.forEach(function (c) { c.el.classList.toggle('ex-selected', c.el.dataset.pos === String(sel)); });
    });
  };
  Examples.prototype.rowOf = function (t) {  // the row whose window holds iteration t
    var st = this.stream.starts, lo = 0, hi = st.length - 1;
    if (!st.length) return -1;
    while (lo < hi) { var m = (lo + hi + 1) >> 1; if (st[m] <= t) lo = m; else hi = m - 1; }
    return lo;
  };
  // the player moved (or a block arrived): paint the frame if its block is here, else ask
  Examples.prototype.frame = function (p) {
    this.player = p || this.player;
    this.update(false);
  };
  Examples.prototype.update = function (force) {
    var s = this.stream, p = this.player || L.players.run;
    if (!s || s.error || !s.R || !p || !this.cells) return;
    var r = this.rowOf(p.iteration());
    if (r < 0) return;
    if (r === this.row && !force) return;
    var B = s.block, bi = Math.floor(r / B), blk = this.blocks.get(bi);
    if (blk && r - blk.r0 >= B / 2 && (bi + 1) * B < s.R) this.request(bi + 1);  // ahead
    if (!blk) { this.request(bi); this.wanted = r; return; }
    this.blocks.delete(bi); this.blocks.set(bi, blk);  // most recently shown last
    this.row = r;
    this.draw(blk.frames[r - blk.r0], r, blk.examples);
  };
  Examples.prototype.request = function (bi) {
    var s = this.stream, self = this, key = s.key;
    if (this.blocks.has(bi) || this.pending.has(bi)) return;
    this.pending.add(bi); this.requests += 1;
    var r0 = bi * s.block, r1 = Math.min(s.R, r0 + s.block);
    fetch(s.url + '&r0=' + r0 + '&r1=' + r1).then(function (res) {
      if (!res.ok) return res.text().then(function (t) { throw new Error(t); });
      return res.json();
    }).then(function (blk) {
      if (!self.stream || self.stream.key !== key) return;  // another stream meanwhile
      self.pending.delete(bi);
      self.blocks.set(bi, blk);
      if (self.blocks.size > MAX_BLOCKS) self.blocks.delete(self.blocks.keys().next().value);
      self.update(false);
    }).catch(function (e) {
      self.pending.delete(bi);
      if (!self.stream || self.stream.key !== key) return;
      self.error = 'cannot load examples: ' + e.message;
      var t = document.getElementById('run-ex-title');
      if (t) t.textContent = self.error;
    });
  };
  Examples.prototype.draw = function (frame, r, renders) {
    var s = this.stream, self = this, fk = s.window > 1 && frame.window ? 'window' : 'row';
    LISTS.forEach(function (spec, li) {
      var top = frame[spec[0] === 'row' ? fk : spec[0]], pos = top[spec[1]], vals = top[spec[1] + '_values'];
      self.cells[li].forEach(function (c, j) {
        if (j >= pos.length) {
          c.el.style.display = 'none'; c.el.dataset.pos = ''; return;
        }
        var ex = renders[String(pos[j])] || {caption: '#?', kind: 'text', text: ''};
        c.el.style.display = '';
        c.el.classList.toggle('ex-flipped', ex.flipped !== undefined && ex.flipped !== null);
        c.el.dataset.pos = String(pos[j]); c.el.dataset.index = String(ex.index);
        if (ex.kind === 'image') {
          if (c.img.getAttribute('src') !== ex.src) c.img.src = ex.src;
          c.img.style.display = ''; c.txt.style.display = 'none';
        } else {
          c.txt.textContent = ex.text; c.txt.style.display = ''; c.img.style.display = 'none';
        }
        c.cap.textContent = ex.caption;
        c.val.textContent = fmt(vals[j]);
        c.el.title = ex.caption + (ex.kind === 'text' ? ' — ' + ex.text : '') +
          (ex.flipped !== undefined && ex.flipped !== null ? ' · label flipped (true label ' + ex.flipped + ')' : '') +
          ' · per-example LCA ' + vals[j].toPrecision(4);
      });
      var strip = self.cells[li][0].el.parentNode;
      strip.classList.toggle('ex-empty', !pos.length);
      strip.dataset.empty = pos.length ? '' : spec[0] === 'row' ? 'none in this frame' : 'none up to t';
    });
    this.markSelected();
    var t = document.getElementById('run-ex-title');
    if (t) {
      var a = s.starts[fk === 'window' ? Math.max(0, r - s.window + 1) : r], e = s.ends[r];
      t.textContent = s.scope_name + ' — ' + (fk === 'window' ? 'window sum, ' : '') +
        (e - a === 1 ? 'iteration ' + intFmt(a) :
        'iterations ' + intFmt(a) + '–' + intFmt(e - 1)) + ' · cumulative: iterations 0–' +
        intFmt(e - 1) + ' · ' + intFmt(s.n_examples) + ' tracked ' +
        (s.split === 'val' ? 'validation ' : '') + 'examples';
    }
    this.paints += 1; this.shownRow = r;
    this.frameData = frame;
    this.scheduleHist();
  };
  // the histogram after the thumbnails are on screen (and at most every 150 ms while playing)
  Examples.prototype.scheduleHist = function () {
    var self = this, p = this.player, wait = 0;
    if (p && p.playing) wait = Math.max(0, HIST_MS_PLAYING - (performance.now() - this.lastHist));
    clearTimeout(this.histTimer);
    requestAnimationFrame(function () {
      self.histTimer = setTimeout(function () { self.drawHist(); }, wait);
    });
  };
  // the histogram is drawn on a canvas (a Plotly redraw of ten stacked traces took 40–180 ms
  // on the 2-core test machine, a canvas ~1 ms); the exports are the Plotly figure of
  // lcaviz/figures/examples.py with the same bins
  function tickFmt(v) {  // 3 significant digits, trailing zeros dropped: 5e-5, 0.002, 150
    var r = +v.toPrecision(3), a = Math.abs(r);
    return a >= 1e-3 && a < 1e4 ? String(r) : r.toExponential();
  }
  function niceStep(span, n) {
    var raw = span / Math.max(n, 1), p = Math.pow(10, Math.floor(Math.log10(raw))), m = raw / p;
    return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
  }
  Examples.prototype.histParts = function (host) {
    if (this.hist && this.hist.host === host && host.contains(this.hist.canvas)) return this.hist;
    host.textContent = '';
    var legend = document.createElement('div'), wrap = document.createElement('div');
    var canvas = document.createElement('canvas'), tip = document.createElement('div');
    legend.className = 'ex-legend'; wrap.className = 'ex-hist-wrap'; tip.className = 'lca-tip';
    canvas.className = 'ex-hist-canvas';
    wrap.appendChild(canvas); wrap.appendChild(tip);
    host.appendChild(legend); host.appendChild(wrap);
    var self = this;
    canvas.addEventListener('mousemove', function (ev) { self.histTip(ev); });
    canvas.addEventListener('mouseleave', function () { tip.style.display = 'none'; });
    this.hist = {host: host, canvas: canvas, legend: legend, tip: tip, legendKey: null};
    return this.hist;
  };
  Examples.prototype.drawHist = function () {
    var host = document.getElementById('run-ex-hist'), s = this.stream, f = this.frameData;
    if (!host || !s || !f) return;
    this.lastHist = performance.now();
    var mode = this.histMode === 'row' && f.hist.window ? 'window' : this.histMode;
    var parts = this.histParts(host), h = f.hist[mode], names = s.classes || ['all examples'];
    var legendKey = h.counts.length + '|' + names.join('|');
    if (parts.legendKey !== legendKey && h.counts.length > LEGEND_MAX) {
      // e.g. modular addition's 97 answers: a legend of them would fill the panel, and the
      // palette repeats anyway; the bar's tooltip names the classes in it
      var period = s.colors.indexOf(s.colors[0], 1);
      parts.legend.textContent = intFmt(h.counts.length) + ' classes (colours repeat every ' +
        (period > 0 ? period : s.colors.length) + '; hover a bar for its counts per class)';
      parts.legend.style.display = '';
      parts.legendKey = legendKey;
    }
    if (parts.legendKey !== legendKey) {  // class names are the bundle's: text only
      parts.legend.textContent = '';
      h.counts.forEach(function (_, c) {
        var item = document.createElement('span'), sw = document.createElement('i');
        item.className = 'ex-legend-item'; sw.style.background = s.colors[c % s.colors.length];
        item.appendChild(sw);
        item.appendChild(document.createTextNode(c < names.length ? names[c] : 'other labels'));
        parts.legend.appendChild(item);
      });
      parts.legend.style.display = h.counts.length > 1 ? '' : 'none';
      parts.legendKey = legendKey;
    }
    var cv = parts.canvas, W = Math.max(host.clientWidth, 200), H = 260;
    var dpr = window.devicePixelRatio || 1;
    if (cv.width !== Math.round(W * dpr) || cv.height !== Math.round(H * dpr)) {
      cv.width = Math.round(W * dpr); cv.height = Math.round(H * dpr);
      cv.style.width = W + 'px'; cv.style.height = H + 'px';
    }
    var g = cv.getContext('2d'), m = {l: 58, r: 14, t: 8, b: 42}, pw = W - m.l - m.r, ph = H - m.t - m.b;
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, W, H);
    var nb = h.counts[0].length, lim = h.lim, totals = [], top = 0, log = this.histLog;
    for (var i = 0; i < nb; i++) {
      var t = 0; h.counts.forEach(function (row) { t += row[i]; }); totals.push(t); top = Math.max(top, t);
    }
    var fy = log ? function (c) { return c > 0 ? Math.log10(c) + 0.3 : 0; } : function (c) { return c; };
    var ymax = Math.max(fy(top) * 1.05, log ? 1.3 : 1);
    var X = function (v) { return m.l + (v + lim) / (2 * lim) * pw; };
    var Y = function (c) { return m.t + ph - fy(c) / ymax * ph; };
    var bw = pw / nb;
    for (i = 0; i < nb; i++) {
      var below = 0;
      for (var c = 0; c < h.counts.length; c++) {
        var n = h.counts[c][i];
        if (!n) continue;
        g.fillStyle = s.colors[c % s.colors.length];
        var y0 = Y(below), y1 = Y(below + n);
        g.fillRect(m.l + i * bw, y1, Math.max(bw - 0.5, 0.5), y0 - y1);
        below += n;
      }
    }
    // axes: ticks, zero line, titles
    g.strokeStyle = '#444'; g.fillStyle = '#222'; g.lineWidth = 1;
    g.font = '11px ' + getComputedStyle(document.body).fontFamily;
    g.beginPath(); g.moveTo(m.l, m.t); g.lineTo(m.l, m.t + ph); g.lineTo(m.l + pw, m.t + ph); g.stroke();
    var step = niceStep(2 * lim, 6);
    g.textAlign = 'center'; g.textBaseline = 'top';
    for (var v = Math.ceil(-lim / step) * step; v <= lim + 1e-12 * lim; v += step) {
      var x = X(v);
      g.beginPath(); g.moveTo(x, m.t + ph); g.lineTo(x, m.t + ph + 4); g.stroke();
      g.fillText(Math.abs(v) < step / 1e6 ? '0' : tickFmt(v), x, m.t + ph + 6);
    }
    g.textAlign = 'right'; g.textBaseline = 'middle';
    var ticks = log ? [1, 10, 100, 1000, 10000, 100000].filter(function (c) { return fy(c) <= ymax; }) :
      (function () { var st = Math.max(1, niceStep(ymax, 4)), out = [];
        for (var c = 0; c <= ymax; c += st) out.push(c); return out; })();
    ticks.forEach(function (c) {
      var y = Y(c);
      g.beginPath(); g.moveTo(m.l - 4, y); g.lineTo(m.l, y); g.stroke();
      g.fillText(intFmt(c), m.l - 6, y);
    });
    g.strokeStyle = '#888'; g.setLineDash([3, 3]);
    g.beginPath(); g.moveTo(X(0), m.t); g.lineTo(X(0), m.t + ph); g.stroke(); g.setLineDash([]);
    g.textAlign = 'center'; g.textBaseline = 'bottom';
    g.fillText('per-example LCA (negative: lowered its loss)', m.l + pw / 2, H - 2);
    g.save(); g.translate(12, m.t + ph / 2); g.rotate(-Math.PI / 2); g.textBaseline = 'middle';
    g.fillText('examples' + (log ? ' (log scale)' : ''), 0, 0); g.restore();
    parts.geom = {m: m, pw: pw, lim: lim, nb: nb, h: h, names: names};
    this.histPaints = (this.histPaints || 0) + 1;
  };
  Examples.prototype.histTip = function (ev) {
    var parts = this.hist, gm = parts && parts.geom;
    if (!gm) return;
    var rect = parts.canvas.getBoundingClientRect(), x = ev.clientX - rect.left;
    var i = Math.floor((x - gm.m.l) / gm.pw * gm.nb);
    if (i < 0 || i >= gm.nb) { parts.tip.style.display = 'none'; return; }
    var w = 2 * gm.lim / gm.nb, a = -gm.lim + i * w, lines = [fmt(a) + ' to ' + fmt(a + w)];
    gm.h.counts.forEach(function (row, c) {
      if (row[i]) lines.push((c < gm.names.length ? gm.names[c] : 'other labels') + ': ' + intFmt(row[i]));
    });
    parts.tip.textContent = lines.join('\n');
    parts.tip.style.whiteSpace = 'pre';
    parts.tip.style.display = 'block';
    parts.tip.style.left = (x + 12) + 'px'; parts.tip.style.top = (ev.clientY - rect.top + 8) + 'px';
  };

  var examples = new Examples();
  L.examples = examples;
  window.dash_clientside = Object.assign({}, window.dash_clientside);
  window.dash_clientside.lcaviz = Object.assign(window.dash_clientside.lcaviz || {}, {
    examplesStream: function (stream, histMode, histLog) {
      examples.configure(stream, histMode, histLog && histLog.length);
      return window.dash_clientside.no_update;
    },
  });
})();
