/* lcaviz player, part 4: the run page's "Examples" section (issue 24).
 *
 * Follows the player's frame in the browser. The server sends a stream once per run / scope /
 * k (lcaviz/app/examples.py) and answers GET /lcaviz/examples with blocks of `stream.block`
 * rows: per row the top-k helped / hurt examples in the row and cumulatively up to it, both
 * histograms by class, and the renderings of the examples named. Blocks are cached here, the
 * next one is fetched before the player reaches it, so a frame costs no request once its block
 * is cached and at most one bounded request per block otherwise. Every string from the
 * bundle is set as text (textContent), never as HTML; names handed to Plotly are escaped.
 */
(function () {
  'use strict';

  var L = window.lcaviz, fmt = L.fmt, intFmt = L.intFmt;
  var MAX_BLOCKS = 256;        // cached blocks (each a few KB to a few hundred KB)
  var HIST_MS_PLAYING = 150;   // histogram redraws while playing, at most this often
  var LISTS = [['row', 'helped', 'this frame · helped most'],
               ['row', 'hurt', 'this frame · hurt most'],
               ['cumulative', 'helped', 'cumulative up to t · helped most'],
               ['cumulative', 'hurt', 'cumulative up to t · hurt most']];

  function esc(s) {  // for Plotly's pseudo-HTML labels
    return String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  }

  function Examples() {
    this.stream = null; this.blocks = new Map(); this.pending = new Set(); this.renders = {};
    this.row = -1; this.paints = 0; this.requests = 0; this.error = '';
    this.histMode = 'row'; this.histLog = false; this.lastHist = 0; this.histTimer = null;
    this.selected = null;
  }
  Examples.prototype.configure = function (stream, histMode, histLog) {
    var fresh = !this.stream || !stream || this.stream.key !== stream.key;
    this.stream = stream;
    this.histMode = histMode || 'row'; this.histLog = !!histLog;
    if (fresh) {
      this.blocks = new Map(); this.pending = new Set(); this.renders = {}; this.row = -1;
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
      label.textContent = spec[2];
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
        pos: this.selected, index: parseInt(el.dataset.index, 10)}});
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
    this.row = r;
    this.draw(blk.frames[r - blk.r0], r);
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
      Object.keys(blk.examples).forEach(function (k) { self.renders[k] = blk.examples[k]; });
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
  Examples.prototype.draw = function (frame, r) {
    var s = this.stream, self = this;
    LISTS.forEach(function (spec, li) {
      var top = frame[spec[0]], pos = top[spec[1]], vals = top[spec[1] + '_values'];
      self.cells[li].forEach(function (c, j) {
        if (j >= pos.length) {
          c.el.style.display = 'none'; c.el.dataset.pos = ''; return;
        }
        var ex = self.renders[String(pos[j])] || {caption: '#?', kind: 'text', text: ''};
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
      strip.dataset.empty = pos.length ? '' : 'none this frame';
    });
    this.markSelected();
    var t = document.getElementById('run-ex-title');
    if (t) {
      var a = s.starts[r], e = s.ends[r];
      t.textContent = s.scope_name + ' — ' + (e - a === 1 ? 'iteration ' + intFmt(a) :
        'iterations ' + intFmt(a) + '–' + intFmt(e - 1)) + ' · cumulative: iterations 0–' +
        intFmt(e - 1) + ' · ' + intFmt(s.n_examples) + ' tracked examples';
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
  Examples.prototype.drawHist = function () {
    var host = document.getElementById('run-ex-hist'), s = this.stream, f = this.frameData, self = this;
    if (!host || !s || !f) return;
    if (!window.Plotly) { clearTimeout(this.histTimer); this.histTimer = setTimeout(function () { self.drawHist(); }, 100); return; }
    this.lastHist = performance.now();
    var h = f.hist[this.histMode], lim = h.lim, nb = h.counts[0].length, w = 2 * lim / nb;
    var x = [];
    for (var i = 0; i < nb; i++) x.push(-lim + (i + 0.5) * w);
    var names = s.classes || ['all examples'];
    var traces = h.counts.map(function (counts, c) {
      var name = c < names.length ? names[c] : 'other labels';
      return {type: 'bar', x: x, y: counts, width: w, name: esc(name),
              marker: {color: s.colors[c % s.colors.length], line: {width: 0}},
              hovertemplate: esc(name) + '<br>%{x:.3g}: %{y:,} examples<extra></extra>'};
    });
    var layout = Object.assign({}, s.hist_layout, {showlegend: h.counts.length > 1});
    layout.yaxis = Object.assign({}, layout.yaxis, {type: this.histLog ? 'log' : 'linear'});
    layout.xaxis = Object.assign({}, layout.xaxis, {range: [-lim, lim]});
    window.Plotly.react(host, traces, layout, {displaylogo: false, responsive: true,
      modeBarButtonsToRemove: ['sendChartToCloud', 'editInChartStudio', 'toImage', 'lasso2d', 'select2d']});
    this.histPaints = (this.histPaints || 0) + 1;
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
