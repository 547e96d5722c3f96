/* lcaviz player, part 1 of 3: frames and how one heatmap paints them.
 *
 * The server describes a heatmap once per layer / frame mode / resolution / zoom (a *stream*:
 * drawing plan, row windows, colour range, axes figure). A View fetches that stream's frames
 * in blocks of rows from /lcaviz/frames (binary float32), keeps them in a byte-capped LRU cache
 * shared by the page, and paints them on a canvas under a transparent Plotly figure (the axes),
 * which it draws itself once Plotly has loaded. Parts 2 (lca_2_player.js: the clock and the
 * bar) and 3 (lca_3_pages.js: the run and compare pages) build on window.lcaviz.
 */
(function () {
  'use strict';

  var CACHE_CAP_BYTES = 192 * 1024 * 1024;  // stated cap of the browser's frame cache
  var BLOCK_BYTES = 2 * 1024 * 1024;        // one request at most (the server caps at 8 MiB)
  var MAX_BLOCK_ROWS = 32;
  var FIRST_BLOCK_ROWS = 4;                 // a small first request: the first paint is fast
  var AHEAD_SECONDS = 2.0;                  // prefetch this much playback ahead
  var MAX_INFLIGHT = 2;
  var SYNC_MS_PLAYING = 500;                // Dash hears the frame at most this often in play

  function fmt(v) {
    if (v === null || v === undefined || !isFinite(v)) return String(v);
    if (v === 0) return '0';
    var a = Math.abs(v);
    if (a >= 1e-3 && a < 1e5) return Number(v.toPrecision(3)).toString();
    return v.toExponential(2).replace('e+', 'e');
  }
  function intFmt(n) { return Number(n).toLocaleString('en-US'); }

  // ---- frame cache, shared by every view of the page ---------------------------------------
  function FrameCache(cap) { this.cap = cap; this.map = new Map(); this.bytes = 0; }
  FrameCache.prototype.get = function (k) {
    var v = this.map.get(k);
    if (v !== undefined) { this.map.delete(k); this.map.set(k, v); }
    return v;
  };
  FrameCache.prototype.has = function (k) { return this.map.has(k); };
  FrameCache.prototype.put = function (k, v) {
    if (this.map.has(k)) { this.bytes -= this.map.get(k).bytes; this.map.delete(k); }
    this.map.set(k, v); this.bytes += v.bytes;
    while (this.bytes > this.cap && this.map.size > 1) {
      var first = this.map.keys().next().value;
      this.bytes -= this.map.get(first).bytes; this.map.delete(first);
    }
  };
  var cache = new FrameCache(CACHE_CAP_BYTES);

  // ---- colour map: the figures' diverging scale as a 256-entry lookup table -----------------
  // (lcaviz/figures/theme.py PALETTES: green / red, or blue / orange for colour-blind readers;
  // the choice is kept in this browser's localStorage)
  var SCALES = {
    redgreen: [[0.0, '#00441b'], [0.2, '#238b45'], [0.4, '#a1d99b'], [0.5, '#ffffff'],
               [0.6, '#fcae91'], [0.8, '#de2d26'], [1.0, '#67000d']],
    blueorange: [[0.0, '#08306b'], [0.2, '#2171b5'], [0.4, '#9ecae1'], [0.5, '#ffffff'],
                 [0.6, '#fdd0a2'], [0.8, '#f16913'], [1.0, '#7f2704']]};
  var PALETTE_KEY = 'lcaviz.palette';
  function storedPalette() {
    try { var p = window.localStorage.getItem(PALETTE_KEY); return SCALES[p] ? p : 'redgreen'; }
    catch (e) { return 'redgreen'; }
  }
  function hex(c) { return [1, 3, 5].map(function (i) { return parseInt(c.substr(i, 2), 16); }); }
  function buildLut(SCALE) {
    var lut = new Uint32Array(256);
    for (var i = 0; i < 256; i++) {
      var x = i / 255, k = 1;
      while (k < SCALE.length - 1 && SCALE[k][0] < x) k++;
      var a = SCALE[k - 1], b = SCALE[k], f = (x - a[0]) / (b[0] - a[0]);
      var ca = hex(a[1]), cb = hex(b[1]);
      var r = Math.round(ca[0] + f * (cb[0] - ca[0]));
      var g = Math.round(ca[1] + f * (cb[1] - ca[1]));
      var bl = Math.round(ca[2] + f * (cb[2] - ca[2]));
      lut[i] = (255 << 24) | (bl << 16) | (g << 8) | r;  // little-endian RGBA
    }
    return lut;
  }
  var palette = storedPalette(), LUT = buildLut(SCALES[palette]);
  // switch the heatmaps' colours (the callers repaint); returns the palette in use
  function setPalette(name) {
    if (!SCALES[name]) return palette;
    palette = name; LUT = buildLut(SCALES[name]);
    try { window.localStorage.setItem(PALETTE_KEY, name); } catch (e) { /* private mode */ }
    return palette;
  }
  var NAN_RGBA = (255 << 24) | (200 << 16) | (200 << 8) | 200;

  // ---- one heatmap bound to a Plotly figure --------------------------------------------------
  function View(hostId, onFrameData) {
    this.hostId = hostId;
    this.stream = null;
    this.shown = -1;          // row painted
    this.frame = null;        // frame painted
    this.inflight = new Map();  // block start -> AbortController
    this.pending = new Set();   // rows on their way
    this.onFrameData = onFrameData;
    this.offscreen = [];
    this.paints = 0;          // frames painted (benchmarks and tests read these two)
    this.lastPaint = 0;
    // a failed fetch (server gone, error reply) is retried after 250 ms, doubling to 5 s, never
    // at once: an immediate retry would spin the page against a dead server
    this.backoff = 0; this.retryAt = 0; this.retryTimer = null;
    this.failTimes = [];      // performance.now() of each failed fetch (tests read it)
  }
  View.prototype.host = function () { return document.getElementById(this.hostId); };
  // the Plotly axes, once Plotly has drawn this stream's figure (else null)
  View.prototype.gd = function () {
    var h = this.host(), gd = h && h.querySelector('.lca-axes');
    return gd && this.stream && gd._fullLayout && gd.__lcaKey === this.stream.key ? gd : null;
  };
  View.prototype.configure = function (stream) {
    var same = !!(this.stream && stream && stream.key && this.stream.key === stream.key);
    if (!same) {
      this.inflight.forEach(function (c) { c.abort(); });
      this.inflight.clear();
      this.pending = new Set();
      this.shown = -1; this.frame = null; this.error = null;
      this.backoff = 0; this.retryAt = 0; clearTimeout(this.retryTimer);
    }
    var newFigure = !this.stream || !same || JSON.stringify(this.stream.items) !== JSON.stringify(stream.items);
    this.stream = stream;
    // new axes are drawn after the new stream's first frame: Plotly.react takes a few hundred
    // ms in a slow browser, and until then the same figure gives the geometry (fixed margins)
    if (newFigure) { this.offscreen = []; this.axesDue = true; }
    if (newFigure && (!stream.has_rows || !stream.R)) this.plotAxes();
    if (!stream.figure) this.clearAxes();
  };
  View.prototype.clearAxes = function () {  // a stream with nothing to draw (an error)
    var d = this.dom();
    if (d && window.Plotly && d.axes._fullLayout) { window.Plotly.purge(d.axes); d.axes.__lcaKey = null; }
    if (d) this.draw();
  };
  View.prototype.nRows = function () { return this.stream ? this.stream.R : 0; };
  View.prototype.rowOfIteration = function (t) {
    var s = this.stream.starts, lo = 0, hi = s.length - 1;
    if (hi < 0) return -1;
    while (lo < hi) { var mid = (lo + hi + 1) >> 1; if (s[mid] <= t) lo = mid; else hi = mid - 1; }
    return lo;
  };
  View.prototype.window = function (r) {  // [first, end) iterations of row r
    var s = this.stream.starts;
    return [s[r], r + 1 < s.length ? s[r + 1] : this.stream.T];
  };
  View.prototype.frameKey = function (r) { return this.stream.key + '#' + r; };
  View.prototype.cached = function (r) { return cache.get(this.frameKey(r)); };
  View.prototype.rowsPerBlock = function () {
    var per = Math.max(4 * this.stream.n_cells, 1);
    return Math.max(1, Math.min(MAX_BLOCK_ROWS, Math.floor(BLOCK_BYTES / per)));
  };
  // make sure rows [r, r + n) are cached or on their way (blocks aligned to rowsPerBlock)
  View.prototype.request = function (r, n) {
    if (!this.stream || !this.stream.has_rows) return;
    if (performance.now() < this.retryAt) return;  // backing off after a failed fetch
    var R = this.nRows(), per = this.rowsPerBlock();
    for (var q = Math.max(r, 0); q < Math.min(R, r + n); q++) {
      if (this.inflight.size >= MAX_INFLIGHT) return;
      if (this.pending.has(q) || cache.has(this.frameKey(q))) continue;
      // one block of consecutive rows that are neither cached nor on their way
      var size = this.shown < 0 ? Math.min(FIRST_BLOCK_ROWS, per) : per, end = q;
      while (end < R && end - q < size && !this.pending.has(end) && !cache.has(this.frameKey(end))) end++;
      this.fetchBlock(q, end);
      q = end - 1;
    }
  };
  View.prototype.fetchBlock = function (r0, r1) {
    var self = this, stream = this.stream, ctl = new AbortController();
    this.inflight.set(r0, ctl);
    for (var q = r0; q < r1; q++) this.pending.add(q);
    var done = function () {
      self.inflight.delete(r0);
      if (self.stream === stream) for (var q = r0; q < r1; q++) self.pending.delete(q);
    };
    // every frame carries its own colour range, whatever the range mode: the cache key has no
    // range mode, so frames fetched for "fixed over run" serve "per frame" unchanged
    var url = stream.url + '&r0=' + r0 + '&r1=' + r1 + '&pct=1';
    fetch(url, {signal: ctl.signal}).then(function (resp) {
      if (!resp.ok) return resp.text().then(function (t) { throw new Error(t); });
      return resp.arrayBuffer();
    }).then(function (buf) {
      var n = new DataView(buf).getUint32(0, true);
      var head = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 4, n)));
      var off = 4 + n, cells = head.n_cells;
      if (cells !== stream.n_cells) throw new Error('frame size ' + cells + ' != plan ' + stream.n_cells);
      var all = new Float32Array(buf.slice(off, off + 4 * cells * (head.r1 - head.r0)));
      for (var k = 0; k < head.r1 - head.r0; k++) {
        cache.put(stream.key + '#' + (head.r0 + k), {
          values: all.slice(k * cells, (k + 1) * cells), bytes: 4 * cells,
          total: head.totals[k], zmax: head.zmax ? head.zmax[k] : null});
      }
      done();
      self.backoff = 0; self.retryAt = 0;
      if (self.stream === stream) self.onFrameData(self);
    }).catch(function (e) {
      done();
      if (e.name === 'AbortError' || self.stream !== stream) return;
      self.error = String(e.message || e);
      self.failTimes.push(performance.now());
      self.backoff = Math.min(self.backoff ? 2 * self.backoff : 250, 5000);
      self.retryAt = performance.now() + self.backoff;
      clearTimeout(self.retryTimer);
      self.retryTimer = setTimeout(function () { self.onFrameData(self); }, self.backoff + 1);
      self.onFrameData(self);  // shows the error; its prefetch waits for retryAt
    });
  };
  // paint row r if its frame is cached; returns whether it did
  View.prototype.paint = function (r) {
    var f = this.cached(r);
    if (!f) return false;
    this.shown = r; this.frame = f;
    this.draw();
    this.paints += 1;
    this.lastPaint = performance.now();
    if (this.axesDue) {
      var self = this;
      this.axesDue = false;
      // after the frame holding these pixels has been presented
      requestAnimationFrame(function () { requestAnimationFrame(function () { self.plotAxes(); }); });
    }
    return true;
  };
  // the colour range in the units drawn (per iteration where the stream asks for it)
  View.prototype.zmax = function () {
    var z = this.stream.zmax;
    if (this.stream.range_mode === 'frame' || !(z > 0)) {
      z = this.frame && this.frame.zmax ? this.frame.zmax / this.divisor(this.shown) : 0;
    }
    return z > 0 ? z : 1;
  };
  // what row r is divided by when drawn: its length in iterations for a per-iteration stream
  // (compare: a window row beside per-iteration rows), else 1
  View.prototype.divisor = function (r) {
    var s = this.stream;
    if (!s || !s.per_iteration || s.mode !== 'row' || !(r >= 0) || !s.starts) return 1;
    var w = this.window(r);
    return Math.max(w[1] - w[0], 1);
  };
  // the host holds the canvas (pixels) and, on top, a transparent Plotly figure (axes)
  View.prototype.dom = function () {
    var h = this.host();
    if (!h) return null;
    var c = h.querySelector('canvas.lca-heat');
    if (!c) {
      h.innerHTML = '';
      c = document.createElement('canvas'); c.className = 'lca-heat';
      var ax = document.createElement('div'); ax.className = 'lca-axes';
      var note = document.createElement('div'); note.className = 'lca-note muted';
      h.appendChild(c); h.appendChild(ax); h.appendChild(note);
      this.bindPointer(h);
    }
    return {host: h, canvas: c, axes: h.querySelector('.lca-axes'), note: h.querySelector('.lca-note')};
  };
  // axes of subplot k: Plotly's once drawn, else computed from the same figure (fixed
  // margins, no automargin): the first frame is painted before Plotly has even loaded
  View.prototype.axes = function (k) {
    var gd = this.gd(), sfx = k === 0 ? '' : String(k + 1);
    if (gd) return [gd._fullLayout['xaxis' + sfx], gd._fullLayout['yaxis' + sfx]];
    var lay = this.stream.figure.layout, h = this.host(), m = lay.margin;
    var W = h.clientWidth, H = lay.height, pw = W - m.l - m.r, ph = H - m.t - m.b;
    var xl = lay['xaxis' + sfx], yl = lay['yaxis' + sfx];
    if (!xl || !yl) return [null, null];
    var xd = xl.domain || [0, 1], yd = yl.domain || [0, 1];
    return [linear(xl.range, m.l + xd[0] * pw, (xd[1] - xd[0]) * pw, false),
            linear(yl.range, m.t + (1 - yd[1]) * ph, (yd[1] - yd[0]) * ph, true)];
  };
  function linear(range, offset, length, vertical) {  // Plotly's l2p/p2l of a linear axis
    var a = range[0], b = range[1];
    return {_offset: offset, _length: length, range: range,
      l2p: function (v) { return vertical ? (b - v) / (b - a) * length : (v - a) / (b - a) * length; },
      p2l: function (px) { return vertical ? b - px / length * (b - a) : a + px / length * (b - a); }};
  }
  View.prototype.size = function () {
    var gd = this.gd();
    if (gd) return [gd._fullLayout.width, gd._fullLayout.height];
    return [this.host().clientWidth, this.stream.figure.layout.height];
  };
  // draw the stream's axes with Plotly once it is there (dcc.Graph loads it; the panels
  // below mount after the first frame, so Plotly never holds the first frame back)
  View.prototype.plotAxes = function () {
    var self = this, d = this.dom(), stream = this.stream;
    if (!d || !stream || !stream.figure) return;
    if (!window.Plotly) { clearTimeout(this.axesTimer); this.axesTimer = setTimeout(function () { self.plotAxes(); }, 50); return; }
    var fig = stream.figure, ax = d.axes;
    window.Plotly.react(ax, fig.data, fig.layout, {displaylogo: false, responsive: true,
      displayModeBar: 'hover', showSendToCloud: false,
      // no "Share chart…" (an upload to Plotly Cloud) and no camera: the card exports do that
      modeBarButtonsToRemove: ['lasso2d', 'select2d', 'toImage', 'sendChartToCloud', 'editInChartStudio']
    }).then(function () {
      if (self.stream !== stream) return;
      ax.__lcaKey = stream.key;
      if (!ax.__lcaBound) {
        ax.__lcaBound = true;
        ax.on('plotly_relayout', function (ev) { self.draw(); if (self.onZoom) self.onZoom(ev); });
        ax.on('plotly_afterplot', function () { self.draw(); });
      }
      self.draw();
    });
  };
  View.prototype.draw = function () {
    var d = this.dom();
    if (!d || !this.stream) return;
    d.note.textContent = this.stream.error || '';
    if (!this.frame || !this.stream.figure) {
      d.canvas.getContext('2d').clearRect(0, 0, d.canvas.width, d.canvas.height);
      return;
    }
    var c = d.canvas, dpr = window.devicePixelRatio || 1, sz = this.size(), w = sz[0], h = sz[1];
    d.host.style.height = h + 'px';
    if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) {
      c.width = Math.round(w * dpr); c.height = Math.round(h * dpr);
      c.style.width = w + 'px'; c.style.height = h + 'px';
    }
    var ctx = c.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    ctx.imageSmoothingEnabled = false;
    var zmax = this.zmax(), scale = 127.5 / (zmax * this.divisor(this.shown));
    var vals = this.frame.values, pos = 0;
    var items = this.stream.items;
    for (var k = 0; k < items.length; k++) {
      var it = items[k], ny = it.ny, nx = it.nx, n = ny * nx;
      var off = this.offscreen[k];
      if (!off) {
        var oc = document.createElement('canvas'); oc.width = nx; oc.height = ny;
        var octx = oc.getContext('2d'), img = octx.createImageData(nx, ny);
        off = this.offscreen[k] = {canvas: oc, ctx: octx, img: img, u32: new Uint32Array(img.data.buffer)};
      }
      var u32 = off.u32;
      for (var i = 0; i < n; i++) {
        var v = vals[pos + i];
        if (v !== v) { u32[i] = NAN_RGBA; continue; }
        var q = (v * scale + 127.5) | 0;
        u32[i] = LUT[q < 0 ? 0 : q > 255 ? 255 : q];
      }
      pos += n;
      off.ctx.putImageData(off.img, 0, 0);
      var ax = this.axes(k), xa = ax[0], ya = ax[1];
      if (!xa || !ya) continue;
      var x0 = xa._offset + xa.l2p(it.c0 - 0.5), x1 = xa._offset + xa.l2p(it.c0 - 0.5 + nx * it.bx);
      var y0 = ya._offset + ya.l2p(it.r0 - 0.5), y1 = ya._offset + ya.l2p(it.r0 - 0.5 + ny * it.by);
      ctx.save();
      ctx.beginPath(); ctx.rect(xa._offset, ya._offset, xa._length, ya._length); ctx.clip();
      ctx.drawImage(off.canvas, 0, 0, nx, ny, Math.min(x0, x1), Math.min(y0, y1),
                    Math.abs(x1 - x0), Math.abs(y1 - y0));
      ctx.restore();
    }
    this.drawColorbar(ctx, zmax);
  };
  View.prototype.drawColorbar = function (ctx, zmax) {
    var xa = this.axes(0)[0], ylast = this.axes(this.stream.items.length - 1)[1], yfirst = this.axes(0)[1];
    if (!xa || !ylast || !yfirst) return;
    // the modebar sits in the figure's top margin, above the image and this bar
    var x = xa._offset + xa._length + 14, y = yfirst._offset;
    var hgt = ylast._offset + ylast._length - y, wid = 14;
    for (var i = 0; i < hgt; i++) {
      var q = Math.round(255 * (1 - i / Math.max(hgt - 1, 1))), c = LUT[q];
      ctx.fillStyle = 'rgb(' + (c & 255) + ',' + ((c >> 8) & 255) + ',' + ((c >> 16) & 255) + ')';
      ctx.fillRect(x, y + i, wid, 1);
    }
    ctx.strokeStyle = '#888'; ctx.lineWidth = 0.5; ctx.strokeRect(x, y, wid, hgt);
    ctx.fillStyle = '#333'; ctx.font = '11px Helvetica, Arial, sans-serif';
    ctx.textBaseline = 'middle';
    [1, 0.5, 0, -0.5, -1].forEach(function (f) {
      var yy = y + (1 - (f + 1) / 2) * hgt;
      ctx.fillRect(x + wid, yy, 3, 0.8);
      ctx.fillText(fmt(f * zmax), x + wid + 5, yy);
    });
    ctx.textBaseline = 'top';
    // what the colours are: per iteration or as stored, and whose range (compare says)
    ctx.fillText(this.stream.per_iteration ? 'LCA / it.' : 'LCA', x - 2, y + hgt + 6);
    var s = this.stream, manual = s.range_mode === 'manual' && s.zmax > 0;
    ctx.fillStyle = '#666';  // how the range was set: a 99.5th-percentile clip, or typed
    ctx.fillText(manual ? 'manual' : '99.5th pct', x - 2, y + hgt + 19);
    if (s.scale_note) ctx.fillText(s.scale_note, x - 2, y + hgt + 32);
  };
  // the parameter under the pointer: plan item, full-resolution pixel and value
  View.prototype.hit = function (ev) {
    var h = this.host();
    if (!h || !this.stream || !this.frame || !this.stream.figure) return null;
    var rect = h.getBoundingClientRect(), px = ev.clientX - rect.left, py = ev.clientY - rect.top;
    var pos = 0, items = this.stream.items;
    for (var k = 0; k < items.length; k++) {
      var it = items[k], ax = this.axes(k), xa = ax[0], ya = ax[1];
      var inside = xa && ya && px >= xa._offset && px <= xa._offset + xa._length &&
        py >= ya._offset && py <= ya._offset + ya._length;
      if (inside) {
        var x = xa.p2l(px - xa._offset), y = ya.p2l(py - ya._offset);
        var col = Math.floor((x - (it.c0 - 0.5)) / it.bx), row = Math.floor((y - (it.r0 - 0.5)) / it.by);
        if (it.kind === 'strip') row = 0;
        if (col >= 0 && col < it.nx && row >= 0 && row < it.ny) {
          return {k: k, item: it, row: row, col: col, value: this.frame.values[pos + row * it.nx + col],
                  prow: it.r0 + row * it.by + (it.by - 1) / 2, pcol: it.c0 + col * it.bx + (it.bx - 1) / 2};
        }
      }
      pos += it.ny * it.nx;
    }
    return null;
  };
  function tensorIndex(shape, prow, pcol) {  // inverse of layout2d.tensor_image
    prow = Math.round(prow); pcol = Math.round(pcol);
    if (shape.length === 0) return [];
    if (shape.length === 1) return [pcol];
    if (shape.length === 4) {
      return [Math.floor(prow / shape[2]), Math.floor(pcol / shape[3]), prow % shape[2], pcol % shape[3]];
    }
    if (shape.length === 3) {  // a row of blocks, one per slice of axis 0 (layout2d)
      return [Math.floor(pcol / shape[2]), prow, pcol % shape[2]];
    }
    var rest = shape.slice(1), idx = [], c = pcol;
    for (var i = rest.length - 1; i >= 0; i--) { idx.unshift(c % rest[i]); c = Math.floor(c / rest[i]); }
    return [prow].concat(idx);
  }
  function flatIndex(shape, index) {
    var f = 0;
    for (var i = 0; i < shape.length; i++) f = f * shape[i] + index[i];
    return f;
  }
  View.prototype.describe = function (h) {
    var it = h.item, idx = tensorIndex(it.shape, h.prow, h.pcol);
    var label = it.name + '[' + idx.join(', ') + ']';
    var block = it.by !== 1 || it.bx !== 1;
    return {label: label, block: block, flat: it.offset + flatIndex(it.shape, idx),
            tensor: it.name, index: idx,
            // two plain-text lines: tensor names come from the bundle (never parsed as HTML)
            lines: [block ? it.name + ': block of ' + it.by + '×' + it.bx + ' around ' +
                    label.slice(it.name.length) : label,
                    (block ? 'LCA (block sum) ' : 'LCA ') + fmt(h.value)]};
  };
  View.prototype.bindPointer = function (host) {
    var self = this, tip = document.getElementById(this.hostId + '-tip');
    if (!tip) {
      tip = document.createElement('div'); tip.id = this.hostId + '-tip'; tip.className = 'lca-tip';
      document.body.appendChild(tip);
    }
    host.addEventListener('mousemove', function (ev) {
      var h = self.hit(ev);
      if (!h) { tip.style.display = 'none'; return; }
      var lines = self.describe(h).lines;
      tip.replaceChildren();
      lines.forEach(function (line, k) {
        if (k) tip.appendChild(document.createElement('br'));
        tip.appendChild(document.createTextNode(line));
      });
      tip.style.display = 'block';
      tip.style.left = (ev.pageX + 14) + 'px'; tip.style.top = (ev.pageY + 12) + 'px';
    });
    host.addEventListener('mouseleave', function () { tip.style.display = 'none'; });
    host.addEventListener('click', function (ev) {
      var h = self.hit(ev);
      if (h && self.onPick) self.onPick(self.describe(h));
    });
    window.addEventListener('resize', function () { self.draw(); });
  };

  // while paused, fill the cache outward from row r (scrubbing anywhere is then instant),
  // up to half the cache for one stream
  View.prototype.fill = function (r) {
    if (!this.stream || !this.stream.has_rows || this.inflight.size) return;
    var R = this.nRows(), budget = Math.floor(CACHE_CAP_BYTES / 2 / Math.max(4 * this.stream.n_cells, 1));
    for (var d = 0; d < Math.min(R, budget); d++) {
      var a = r + d, b = r - d - 1;
      if (a < R && !cache.has(this.frameKey(a))) { this.request(a, 1); return; }
      if (b >= 0 && !cache.has(this.frameKey(b))) { this.request(b, 1); return; }
    }
  };
  View.prototype.frameEnd = function (r) {  // the iteration time axes mark: end of the window
    return this.window(r)[1];
  };

  window.lcaviz = Object.assign(window.lcaviz || {}, {
    fmt: fmt, intFmt: intFmt, cache: cache, CACHE_CAP_BYTES: CACHE_CAP_BYTES,
    setPalette: setPalette, palette: function () { return palette; },
    AHEAD_SECONDS: AHEAD_SECONDS, SYNC_MS_PLAYING: SYNC_MS_PLAYING, View: View, players: {},
  });
})();
