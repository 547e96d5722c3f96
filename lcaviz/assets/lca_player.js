/* lcaviz player: the per-parameter LCA heatmap as a video, played in the browser.
 *
 * The server sends, once per layer / frame mode / resolution / zoom, a *stream* descriptor
 * (plan, row windows, colour range) into a dcc.Store, and Plotly draws the axes of an empty
 * figure. This file fetches frames in blocks of rows from /lcaviz/frames (binary float32),
 * keeps them in a byte-capped LRU cache, prefetches ahead of the play head, and paints them
 * on a canvas under Plotly's axes. Scrubbing, Play/Pause, speed and loop are plain DOM events
 * handled here: no Python round trip per frame, so Pause acts at once whatever the server does.
 * Dash learns the current frame through a throttled dcc.Store (for the other panels).
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
  var SCALE = [[0.0, '#00441b'], [0.2, '#238b45'], [0.4, '#a1d99b'], [0.5, '#ffffff'],
               [0.6, '#fcae91'], [0.8, '#de2d26'], [1.0, '#67000d']];
  function hex(c) { return [1, 3, 5].map(function (i) { return parseInt(c.substr(i, 2), 16); }); }
  var LUT = (function () {
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
  })();
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
  }
  View.prototype.host = function () { return document.getElementById(this.hostId); };
  // the Plotly axes, once Plotly has drawn this stream's figure (else null)
  View.prototype.gd = function () {
    var h = this.host(), gd = h && h.querySelector('.lca-axes');
    return gd && this.stream && gd._fullLayout && gd.__lcaKey === this.stream.key ? gd : null;
  };
  View.prototype.configure = function (stream) {
    var same = this.stream && stream && this.stream.key === stream.key;
    if (!same) {
      this.inflight.forEach(function (c) { c.abort(); });
      this.inflight.clear();
      this.pending = new Set();
      this.shown = -1; this.frame = null; this.error = null;
    }
    var newFigure = !this.stream || !same || JSON.stringify(this.stream.items) !== JSON.stringify(stream.items);
    this.stream = stream;
    // new axes are drawn after the new stream's first frame: Plotly.react takes a few hundred
    // ms in a slow browser, and until then the same figure gives the geometry (fixed margins)
    if (newFigure) { this.offscreen = []; this.axesDue = true; }
    if (newFigure && (!stream.has_rows || !stream.R)) this.plotAxes();
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
    var url = stream.url + '&r0=' + r0 + '&r1=' + r1 + (stream.range_mode === 'frame' ? '&pct=1' : '');
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
      if (self.stream === stream) self.onFrameData(self);
    }).catch(function (e) {
      done();
      if (e.name !== 'AbortError') { self.error = String(e.message || e); self.onFrameData(self); }
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
  View.prototype.zmax = function () {
    var z = this.stream.zmax;
    if (this.stream.range_mode === 'frame' || !(z > 0)) z = this.frame && this.frame.zmax;
    return z > 0 ? z : 1;
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
      modeBarButtonsToRemove: ['lasso2d', 'select2d', 'toImage']}).then(function () {
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
    var zmax = this.zmax(), scale = 127.5 / zmax, vals = this.frame.values, pos = 0;
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
    var x = xa._offset + xa._length + 18, y = yfirst._offset;
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
    ctx.fillText('LCA', x - 2, y + hgt + 6);
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
            text: (block ? it.name + ': block of ' + it.by + '×' + it.bx + ' around ' +
                   label.slice(it.name.length) + '<br>LCA (block sum) ' : label + '<br>LCA ') +
                  fmt(h.value)};
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
      tip.innerHTML = self.describe(h).text;
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

  // ---- the clock: one timeline (sorted iteration starts) shared by the page's views ---------
  function Player(opts) {
    this.views = [];
    this.index = 0;              // position on the timeline
    this.timeline = [0];
    this.playing = false;
    this.speed = 1; this.rate = 30; this.loop = true;
    this.lastAdvance = 0; this.lastSync = 0;
    this.opts = opts;            // {bar, syncId, markerGraphs, mode}
    this.stats = {frames: 0, waits: 0, started: 0};
    this.raf = null;
  }
  Player.prototype.rebuildTimeline = function () {
    var set = new Set(), T = 0;
    this.views.forEach(function (v) {
      if (!v.stream) return;
      v.stream.starts.forEach(function (s) { set.add(s); });
      T = Math.max(T, v.stream.T);
    });
    var tl = Array.from(set).sort(function (a, b) { return a - b; });
    this.timeline = tl.length ? tl : [0];
    this.T = T;
    if (this.index >= this.timeline.length) this.index = this.timeline.length - 1;
    this.updateBar();
  };
  Player.prototype.iteration = function () { return this.timeline[this.index]; };
  Player.prototype.rowsFor = function (i) {
    var t = this.timeline[i];
    return this.views.map(function (v) { return v.stream ? v.rowOfIteration(t) : -1; });
  };
  Player.prototype.ready = function (i) {
    var rows = this.rowsFor(i);
    return this.views.every(function (v, k) {
      return !v.stream || !v.stream.has_rows || rows[k] < 0 || !!v.cached(rows[k]);
    });
  };
  Player.prototype.prefetch = function () {
    var ahead = Math.max(8, Math.ceil(this.rate * AHEAD_SECONDS)) * this.speed;
    var rows = this.rowsFor(this.index), self = this;
    this.views.forEach(function (v, k) {
      if (!v.stream || rows[k] < 0) return;
      v.request(rows[k], ahead);
      if (!self.playing) v.fill(rows[k]);
    });
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
  Player.prototype.show = function (i) {
    this.index = Math.max(0, Math.min(i, this.timeline.length - 1));
    var rows = this.rowsFor(this.index);
    this.views.forEach(function (v, k) { if (rows[k] >= 0) v.paint(rows[k]); });
    this.prefetch();
    this.updateBar();
  };
  Player.prototype.seek = function (i) {
    this.show(i); this.markers();
    var self = this;  // after the new frame is on screen: Dash may re-render other panels
    clearTimeout(this.syncTimer);
    this.syncTimer = setTimeout(function () { self.sync(true); }, 120);
  };
  Player.prototype.play = function () {
    if (this.playing) return;
    if (this.index >= this.timeline.length - 1) this.index = 0;
    this.playing = true; this.lastAdvance = performance.now();
    this.stats = {frames: 0, waits: 0, started: performance.now()};
    this.updateBar(); this.prefetch(); this.tick();
  };
  Player.prototype.pause = function () {
    this.playing = false;
    if (this.raf) { cancelAnimationFrame(this.raf); this.raf = null; }
    this.updateBar(); this.sync(true); this.markers();
  };
  Player.prototype.toggle = function () { if (this.playing) this.pause(); else this.play(); };
  Player.prototype.tick = function () {
    var self = this;
    this.raf = requestAnimationFrame(function (now) {
      if (!self.playing) return;
      if (now - self.lastAdvance >= 1000 / self.rate - 2) {
        var next = self.index + self.speed, last = self.timeline.length - 1;
        if (next > last) next = self.loop ? 0 : last;
        if (next === self.index && !self.loop) { self.pause(); return; }
        if (self.ready(next)) {
          self.show(next);
          self.stats.frames += 1;
          self.lastAdvance = now;
          if (next === last && !self.loop) { self.pause(); return; }
        } else {
          self.stats.waits += 1;  // wait for the frame: never skip one
          self.prefetchAt(next);
        }
        self.sync(false); self.markers();
      }
      self.tick();
    });
  };
  Player.prototype.prefetchAt = function (i) {
    var rows = this.rowsFor(i);
    this.views.forEach(function (v, k) { if (v.stream && rows[k] >= 0) v.request(rows[k], 8); });
  };
  Player.prototype.onFrameData = function (view) {
    if (view.shown < 0 || !this.playing) {
      var rows = this.rowsFor(this.index), k = this.views.indexOf(view);
      if (k >= 0 && rows[k] >= 0) view.paint(rows[k]);
      this.updateBar();
    }
    this.prefetch();
  };
  // Dash hears the frame (other panels, exports) throttled while playing, at once otherwise
  Player.prototype.sync = function (now) {
    var t = performance.now();
    if (!this.opts.syncId || (!now && t - this.lastSync < SYNC_MS_PLAYING)) return;
    this.lastSync = t;
    var v = this.views[0], rows = this.rowsFor(this.index);
    if (!window.dash_clientside || !window.dash_clientside.set_props) return;
    this.syncedIndex = this.index;
    window.dash_clientside.set_props(this.opts.syncId, {data: {
      index: this.index, iteration: this.iteration(), row: rows[0],
      end: v && v.stream && rows[0] >= 0 ? v.window(rows[0])[1] : this.iteration() + 1}});
  };
  // the time marker of the other plots: a thin line over each plot's area, moved with CSS
  // (no Plotly redraw: a relayout of four figures costs ~65 ms, a style change nothing)
  Player.prototype.markers = function () {
    var graphs = this.opts.markerGraphs || [], v = this.views[0], self = this;
    if (!graphs.length || !v || !v.stream) return;
    var r = this.rowsFor(this.index)[0], end = r >= 0 ? v.frameEnd(r) : this.iteration();
    graphs.forEach(function (id) {
      var gd = document.querySelector('#' + id + ' .js-plotly-plot');
      var fl = gd && gd._fullLayout, xa = fl && fl.xaxis;
      var box = gd && gd.querySelector('.svg-container');
      if (!xa || !box || !xa.l2p) return;
      if (!gd.__lcaMarker && gd.on) {  // the figure was redrawn (new data): put the line back
        gd.__lcaMarker = true;
        gd.on('plotly_afterplot', function () { self.markers(); });
      }
      var line = box.querySelector('.lca-marker');
      if (!line) { line = document.createElement('div'); line.className = 'lca-marker'; box.appendChild(line); }
      var x = xa._offset + xa.l2p(end);
      var inside = x >= xa._offset && x <= xa._offset + xa._length;
      line.style.display = inside ? 'block' : 'none';
      line.style.left = x + 'px'; line.style.top = fl._size.t + 'px';
      line.style.height = fl._size.h + 'px';
      line.dataset.iteration = String(end);
    });
  };
  View.prototype.frameEnd = function (r) {  // the iteration time axes mark: end of the window
    return this.window(r)[1];
  };

  // ---- the bar: play button, slider (timeline index), iteration box, speed, rate, loop -------
  Player.prototype.buildBar = function (host) {
    if (!host || host.querySelector('.lca-bar')) return;
    var self = this, bar = document.createElement('div');
    bar.className = 'lca-bar';
    bar.innerHTML =
      '<div class="player-row">' +
      '<button class="btn play" data-lca="play">▶ Play</button>' +
      '<input type="range" class="lca-slider" data-lca="slider" min="0" max="0" step="1" value="0">' +
      '<span class="slider-label" data-lca="label"></span></div>' +
      '<div class="player-row controls-row">' +
      '<div class="control"><label>go to iteration</label><input type="number" class="num" data-lca="goto" min="0" step="1"></div>' +
      '<div class="control"><label>step (frames)</label><select data-lca="speed">' +
      [1, 2, 5, 10, 25].map(function (s) { return '<option value="' + s + '">' + s + '×</option>'; }).join('') +
      '</select></div>' +
      '<div class="control"><label>frames / s</label><select data-lca="rate">' +
      [5, 10, 15, 24, 30, 60].map(function (s) { return '<option value="' + s + '"' + (s === 30 ? ' selected' : '') + '>' + s + '</option>'; }).join('') +
      '</select></div>' +
      '<label class="check"><input type="checkbox" data-lca="loop" checked> loop</label>' +
      '<span class="muted small" data-lca="msg"></span></div>';
    host.appendChild(bar);
    var q = function (n) { return bar.querySelector('[data-lca="' + n + '"]'); };
    this.el = {play: q('play'), slider: q('slider'), label: q('label'), goto: q('goto'),
               speed: q('speed'), rate: q('rate'), loop: q('loop'), msg: q('msg')};
    // every control acts directly on the player: no server round trip
    this.el.play.addEventListener('click', function () { self.toggle(); });
    this.el.slider.addEventListener('input', function () {
      if (self.playing) self.pause();
      self.seek(parseInt(self.el.slider.value, 10));
    });
    this.el.speed.addEventListener('change', function () { self.speed = parseInt(self.el.speed.value, 10); });
    this.el.rate.addEventListener('change', function () { self.rate = parseInt(self.el.rate.value, 10); });
    this.el.loop.addEventListener('change', function () { self.loop = self.el.loop.checked; });
    var go = function () {
      var raw = self.el.goto.value, t = Number(raw), T = self.T;
      if (raw === '' || !Number.isInteger(t)) { self.el.msg.textContent = 'type a whole iteration number'; return; }
      if (t < 0 || t >= T) {
        self.el.msg.textContent = 'iteration ' + intFmt(t) + ' is outside this run (0–' + intFmt(T - 1) + ')';
        return;
      }
      self.el.msg.textContent = '';
      var i = 0, tl = self.timeline;
      while (i + 1 < tl.length && tl[i + 1] <= t) i++;
      if (self.playing) self.pause();
      self.seek(i);
    };
    this.el.goto.addEventListener('keydown', function (ev) { if (ev.key === 'Enter') go(); });
    this.el.goto.addEventListener('change', go);
    document.addEventListener('keydown', function (ev) {
      if (!document.body.contains(bar) || ev.target.tagName === 'INPUT' || ev.target.tagName === 'SELECT') return;
      if (ev.key === ' ') { ev.preventDefault(); self.toggle(); }
    });
  };
  Player.prototype.label = function () {
    var v = this.views[0];
    if (!v || !v.stream) return '';
    if (!v.stream.has_rows) return 'this layer has no per-parameter rows (--lca-layers)';
    if (!v.stream.R) return 'no LCA rows yet';
    var r = this.rowsFor(this.index)[0], w = v.window(r), mode = v.stream.mode, a = w[0], e = w[1];
    if (mode === 'cumulative') a = 0;
    if (mode === 'window') a = v.window(Math.max(0, r - v.stream.window + 1))[0];
    var span = e - a === 1 ? 'iteration ' + intFmt(a) : 'iterations ' + intFmt(a) + '–' + intFmt(e - 1);
    var pre = mode === 'cumulative' ? 'cumulative, ' : mode === 'window' ? 'window sum, ' : '';
    var size = mode === 'row' && e - a > 1 ? ' (one row of ' + (e - a) + ')' : '';
    return pre + span + size + ' · frame ' + intFmt(this.index + 1) + ' of ' + intFmt(this.timeline.length);
  };
  Player.prototype.updateBar = function () {
    if (!this.el) return;
    this.el.slider.max = String(Math.max(this.timeline.length - 1, 0));
    this.el.slider.value = String(this.index);
    this.el.label.textContent = this.label();
    this.el.play.textContent = this.playing ? '❚❚ Pause' : '▶ Play';
    var v = this.views[0];
    this.el.goto.max = String(Math.max((this.T || 1) - 1, 0));
    if (v && v.error) this.el.msg.textContent = v.error;
    if (this.opts.onUpdate) this.opts.onUpdate(this);
  };

  // ---- pages -----------------------------------------------------------------------------
  var players = {};
  function runPlayer() {
    var p = players.run;
    if (!p) {
      p = players.run = new Player({syncId: 'run-frame', markerGraphs: ['run-loss', 'run-residual',
                                    'run-layer-curves', 'run-help-time'], onUpdate: runInfo});
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
  function runInfo(p) {
    var v = p.views[0], title = document.getElementById('run-heatmap-title');
    var info = document.getElementById('run-heatmap-info');
    if (!v || !v.stream) return;
    if (title) title.textContent = v.stream.layer_name + ' — ' + ({row: 'LCA', cumulative: 'cumulative LCA', window: 'window sum of LCA'}[v.stream.mode]) + ', ' + p.label().split(' · ')[0];
    if (info && v.frame) {
      var blocks = v.stream.items.filter(function (it) { return it.by !== 1 || it.bx !== 1; });
      info.textContent = intFmt(v.stream.layer_size) + ' parameters · layer LCA ' + fmt(v.frame.total) +
        ' · colour range ±' + fmt(v.zmax()) + ' (' + (v.stream.range_mode === 'frame' || !(v.stream.zmax > 0) ? 'this frame' : 'fixed over run') + ')' +
        (blocks.length ? ' · block sums ' + blocks.map(function (it) { return it.by + '×' + it.bx; }).join(', ') +
         ': each cell is the exact sum of its block; zoom in (drag a box) or choose full resolution for single parameters' : '');
    }
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

  window.lcaviz = window.lcaviz || {};
  window.lcaviz.players = players;
  window.lcaviz.cache = cache;
  window.lcaviz.CACHE_CAP_BYTES = CACHE_CAP_BYTES;
  window.lcaviz.View = View;
  window.lcaviz.Player = Player;

  // clientside callbacks (wired in lcaviz/app/pages/run_callbacks.py)
  window.dash_clientside = Object.assign({}, window.dash_clientside, {
    lcaviz: {
      runStream: function (stream) {
        var p = runPlayer();
        if (!stream) return window.dash_clientside.no_update;
        p.buildBar(document.getElementById('run-player-bar'));
        var view = p.views[0], fresh = !view.stream || view.stream.key !== stream.key;
        var t = view.stream && view.stream.run === stream.run ? p.iteration() : 0;
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
      frameGate: function (frame, barsScope, drillParam) {
        var nu = window.dash_clientside.no_update;
        return [barsScope === 'upto' ? frame : nu, drillParam ? frame : nu];
      },
      panelsMeta: function (meta, ready, runId) {
        return meta && ready && ready === runId ? meta : window.dash_clientside.no_update;
      },
    },
  });
})();
