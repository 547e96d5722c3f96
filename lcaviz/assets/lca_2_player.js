/* lcaviz player, part 2 of 3: the clock and the bar (see lca_1_view.js).
 *
 * One Player per page drives its Views through one timeline: the sorted iteration starts of
 * their rows (the run page: one view, one frame per row; compare: the union of the runs'
 * rows, or a fraction of each run's training). Play runs on requestAnimationFrame and waits
 * for a frame rather than skip it; scrubbing, Play/Pause, step, rate and loop are DOM events
 * handled here, so no Python round trip stands between an input and its pixels.
 */
(function () {
  'use strict';

  var L = window.lcaviz, fmt = L.fmt, intFmt = L.intFmt;
  var AHEAD_SECONDS = L.AHEAD_SECONDS, SYNC_MS_PLAYING = L.SYNC_MS_PLAYING;
  // timeline positions when runs are matched by fraction of training: at least this many, and
  // one per iteration of the longest run up to MAX_FRACTION_STEPS (so that "go to iteration"
  // lands on the iteration typed, not on the nearest of 200 steps)
  var FRACTION_STEPS = 200, MAX_FRACTION_STEPS = 2000;

  // ---- the clock: one timeline (sorted iteration starts) shared by the page's views ---------
  function Player(opts) {
    this.views = [];
    this.index = 0;              // position on the timeline
    this.timeline = [0];
    this.playing = false;
    this.speed = 1; this.rate = 30; this.loop = true;
    this.lastAdvance = 0; this.lastSync = 0;
    this.opts = opts;            // {syncId, markerGraphs, onUpdate, label, markerX}
    this.axis = 'iteration';     // or 'fraction' (compare: each run's share of its training)
    this.stats = {frames: 0, waits: 0, started: 0};
    this.raf = null;
  }
  Player.prototype.rebuildTimeline = function () {
    var set = new Set(), T = 0, tl;
    this.views.forEach(function (v) {
      if (!v.stream || !v.stream.starts) return;
      v.stream.starts.forEach(function (s) { set.add(s); });
      T = Math.max(T, v.stream.T);
    });
    if (this.axis === 'fraction') {  // each run at the same fraction of its own training
      tl = [];
      var steps = Math.max(FRACTION_STEPS, Math.min(T, MAX_FRACTION_STEPS));
      for (var i = 0; i < steps; i++) tl.push(i / (steps - 1));
    } else {
      tl = Array.from(set).sort(function (a, b) { return a - b; });
    }
    this.timeline = tl.length ? tl : [0];
    this.T = T;
    if (this.index >= this.timeline.length) this.index = this.timeline.length - 1;
    this.updateBar();
  };
  // the timeline position as an iteration (of the longest run, in fraction mode)
  Player.prototype.iteration = function () {
    var x = this.timeline[this.index];
    return this.axis === 'fraction' ? Math.round(x * Math.max(this.T - 1, 0)) : x;
  };
  Player.prototype.iterationOf = function (v, i) {  // the iteration view v shows at position i
    var x = this.timeline[i];
    return this.axis === 'fraction' ? Math.round(x * Math.max(v.stream.T - 1, 0)) : x;
  };
  Player.prototype.indexOfIteration = function (t) {
    var tl = this.timeline, i = 0;
    if (this.axis === 'fraction') return Math.round(t / Math.max(this.T - 1, 1) * (tl.length - 1));
    while (i + 1 < tl.length && tl[i + 1] <= t) i++;
    return i;
  };
  Player.prototype.rowsFor = function (i) {
    var self = this;
    return this.views.map(function (v) {
      return v.stream && v.stream.starts ? v.rowOfIteration(self.iterationOf(v, i)) : -1;
    });
  };
  Player.prototype.ready = function (i) {
    var rows = this.rowsFor(i);
    return this.views.every(function (v, k) {
      return !v.stream || !v.stream.has_rows || !v.stream.R || rows[k] < 0 || !!v.cached(rows[k]);
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
      index: this.index, iteration: this.iteration(), row: rows[0], axis: this.axis,
      position: this.timeline[this.index],
      end: v && v.stream && rows[0] >= 0 ? v.window(rows[0])[1] : this.iteration() + 1}});
  };
  // the time marker of the other plots: a thin line over each plot's area, moved with CSS
  // (no Plotly redraw: a relayout of four figures costs ~65 ms, a style change nothing)
  Player.prototype.markers = function () {
    var graphs = this.opts.markerGraphs || [], v = this.views[0], self = this;
    if (!graphs.length || !v || !v.stream) return;
    var r = this.rowsFor(this.index)[0];
    var end = this.opts.markerX ? this.opts.markerX(this) : r >= 0 ? v.frameEnd(r) : this.iteration();
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
  // ---- the bar: play button, slider (timeline index), iteration box, speed, rate, loop -------
  Player.prototype.buildBar = function (host) {
    if (!host || host.querySelector('.lca-bar')) return;
    var self = this, bar = document.createElement('div');
    bar.className = 'lca-bar';
    bar.innerHTML =
      '<div class="player-row">' +
      '<button class="btn play" data-lca="play" aria-label="play or pause">▶ Play</button>' +
      '<input type="range" class="lca-slider" data-lca="slider" min="0" max="0" step="1" value="0" aria-label="frame">' +
      '<span class="slider-label" data-lca="label"></span></div>' +
      '<div class="player-row controls-row">' +
      '<div class="control"><label>go to iteration</label><input type="number" class="num" data-lca="goto" min="0" step="1" aria-label="go to iteration"></div>' +
      '<div class="control"><label>step (frames)</label><select data-lca="speed" aria-label="step (frames)">' +
      [1, 2, 5, 10, 25].map(function (s) { return '<option value="' + s + '">' + s + '×</option>'; }).join('') +
      '</select></div>' +
      '<div class="control"><label>frames / s</label><select data-lca="rate" aria-label="frames per second">' +
      [5, 10, 15, 24, 30, 60].map(function (s) { return '<option value="' + s + '"' + (s === 30 ? ' selected' : '') + '>' + s + '</option>'; }).join('') +
      '</select></div>' +
      '<label class="check"><input type="checkbox" data-lca="loop" checked aria-label="loop"> loop</label>' +
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
      if (self.playing) self.pause();
      self.seek(self.indexOfIteration(t));
      if (self.axis === 'fraction' && self.iteration() !== t) {  // a run over 2,000 iterations
        self.el.msg.textContent = 'nearest frame: iteration ' + intFmt(self.iteration()) +
          ' (the iteration axis goes to every one)';
      }
    };
    this.el.goto.addEventListener('keydown', function (ev) { if (ev.key === 'Enter') go(); });
    this.el.goto.addEventListener('change', go);
    document.addEventListener('keydown', function (ev) {
      // Space plays / pauses, also while the slider has the focus; a text box or a menu keeps
      // its own Space
      var t = ev.target;
      if (!document.body.contains(bar) || ev.key !== ' ') return;
      if (t !== self.el.slider && (t.tagName === 'INPUT' || t.tagName === 'SELECT' || t.tagName === 'TEXTAREA' || t.isContentEditable)) return;
      ev.preventDefault(); self.toggle();
    });
  };
  Player.prototype.label = function () {
    if (this.opts.label) return this.opts.label(this);
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

  L.Player = Player;
  L.FRACTION_STEPS = FRACTION_STEPS;
})();
