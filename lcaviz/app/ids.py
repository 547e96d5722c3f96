"""Every component id used by the dashboard, in one place (pages import these constants)."""

from __future__ import annotations

# -- shell -------------------------------------------------------------------------------
NAV = "nav"

# -- runs page ---------------------------------------------------------------------------
RUNS_TABLE = "runs-table"
RUNS_INTERVAL = "runs-interval"
RUNS_ERRORS = "runs-errors"
RUNS_COUNT = "runs-count"
RUNS_OPEN = "runs-open"
RUNS_COMPARE = "runs-compare"
RUNS_HINT = "runs-hint"
RUNS_LOCATION = "runs-location"
RUNS_FILTER = "runs-filter"  # text box: rows containing every word
RUNS_FILTER_HINT = "runs-filter-hint"
RUNS_DATA = "runs-data"  # dcc.Store: every row, before the filter
RUNS_SELECTED = "runs-selected"  # dcc.Store: ticked run ids (survive filter, sort, rescan)

# -- run page ----------------------------------------------------------------------------
RUN_ID = "run-id"  # dcc.Store with the (validated) run id
RUN_HEADER = "run-header"
RUN_ERROR = "run-error"
RUN_META = "run-meta"  # dcc.Store: layer/class names, stride, T, R, flags
PLAYER_BAR = "run-player-bar"  # filled by lca_player.js: play, slider, go-to, speed, loop
FRAME = "run-frame"  # dcc.Store the player writes: {index, iteration, row, end} (throttled)
FRAME_BARS = "run-frame-bars"  # FRAME, passed on only while the bars show "up to t"
FRAME_DRILL = "run-frame-drill"  # FRAME, passed on only while a parameter is selected
HEATMAP_STREAM = "run-heatmap-stream"  # dcc.Store: what the player fetches and draws
HEATMAP_TITLE = "run-heatmap-title"  # frame title, written by the player
PANELS_READY = "run-panels-ready"  # dcc.Store: run id, set once the heatmap has painted
PANELS = "run-panels"  # container of the sections below the heatmap (mounted late)
PANELS_META = "run-panels-meta"  # RUN_META, passed on once PANELS_READY (the other panels)
MODE = "run-mode"  # row | cumulative | window
WINDOW = "run-window"
LAYER = "run-layer"
RANGE_MODE = "run-range-mode"  # fixed | frame
RESOLUTION = "run-resolution"  # auto | full
HEATMAP = "run-heatmap"  # the player's host div (canvas + Plotly axes)
HEATMAP_PLAN = "run-heatmap-plan"  # dcc.Store: plan of the drawn heatmap (zoom mapping)
HEATMAP_INFO = "run-heatmap-info"  # written by the player
ZOOM_RESET = "run-zoom-reset"
ZOOM = "run-zoom"  # dcc.Store: zoom region of the heatmap
ZOOM_REQUEST = "run-zoom-request"  # dcc.Store: the player's box zoom (Plotly relayout data)
TRAIN_VAL = "run-train-val"  # training vs validation LCA per layer (--val-lca)
LCA_ERROR = "run-lca-error"  # per-layer error of the stored LCA (--lca-error-every)
TABLE_S1 = "run-table-s1"  # first order vs RK4 against the finer reference
DRILL = "run-drill"
DRILL_PARAM = "run-drill-param"  # dcc.Store: the clicked parameter (set by the player)
DRILL_INFO = "run-drill-info"
LAYER_BARS = "run-layer-bars"
BARS_SCOPE = "run-bars-scope"  # total | upto
BARS_NORM = "run-bars-norm"  # raw | per_param
RANGE_VALUE = "run-range-value"  # the manual colour range ±value
EXPORT_SIZE = "run-export-size"  # screen | paper column | paper page | slide (PNG/SVG/PDF)
PALETTE = "run-palette"  # redgreen | blueorange: the heatmap's colours (kept per browser)
HEAT_GROUP = "run-heat-group"  # "" or a group name: the heatmap zoomed to one head
BARS_BY = "run-bars-by"  # layer | group (runs with named groups: attention heads)
LAYER_CURVES = "run-layer-curves"
CURVES_CUMULATIVE = "run-curves-cumulative"
LOSS = "run-loss"
LOSS_LOG = "run-loss-log"
RESIDUAL = "run-residual"
RESIDUAL_LOG = "run-residual-log"
HELP_TIME = "run-help-time"
HELP_HIST = "run-help-hist"
HELP_LAYER = "run-help-layer"
HELP_FRACTION = "run-help-fraction"
WEIBULL = "run-weibull"
WEIBULL_GROUP = "run-weibull-group"
WEIBULL_STATUS = "run-weibull-status"
WEIBULL_INTERVAL = "run-weibull-interval"
SCAN_START = "run-scan-start"  # button: stream a large run once for histograms and fits
SYNC_CLASS = "run-sync-class"
SYNC_K = "run-sync-k"
SYNC_SHIFT = "run-sync-shift"
SYNC_RESAMPLES = "run-sync-resamples"
SYNC_RUN = "run-sync-run"
SYNC_PEAKS = "run-sync-peaks"
SYNC_TEST = "run-sync-test"
SYNC_STATUS = "run-sync-status"
URL_VIEW = "run-url-view"  # dcc.Store: layer / iteration asked for by the URL (a shared link)
PAGE_TOKEN = "run-page-token"  # dcc.Store: this page visit's id, owner of its background jobs
SYNC_INTERVAL = "run-sync-interval"
# the Examples section (runs with per-example LCA)
EX_SCOPE = "run-ex-scope"  # "all" | "layer:I" | "group:NAME" | "head:PREFIX.headH"
EX_SPLIT = "run-ex-split"  # "train" | "val": which examples (runs with validation examples)
EX_SPLIT_WRAP = "run-ex-split-wrap"  # its label, hidden for runs without validation examples
EX_K = "run-ex-k"  # examples per list
EX_GRID = "run-ex-grid"  # host of the thumbnails (lca_4_examples.js draws them)
EX_TITLE = "run-ex-title"  # the frame the thumbnails show (written by the page)
EX_HIST = "run-ex-hist"  # host of the histogram by class (drawn by the page)
EX_HIST_MODE = "run-ex-hist-mode"  # row | cumulative
EX_HIST_LOG = "run-ex-hist-log"
EX_DETAIL = "run-ex-detail"  # the clicked example through training
EX_STREAM = "run-ex-stream"  # dcc.Store: what the page fetches (lcaviz.app.examples)
EX_SELECTED = "run-ex-selected"  # dcc.Store: the clicked example {pos, index}
REPORT_BTN = "run-report"
REPORT_DOWNLOAD = "run-report-download"

# -- compare page ------------------------------------------------------------------------
CMP_IDS = "cmp-ids"
CMP_HEADER = "cmp-header"
CMP_ERROR = "cmp-error"
CMP_PLAYER_BAR = "cmp-player-bar"  # filled by the player: play, slider, step, loop
CMP_STREAMS = "cmp-streams"  # dcc.Store: one player stream per run
CMP_FRAME = "cmp-frame"  # dcc.Store the player writes: {index, position, axis, ...}
CMP_LAYER = "cmp-layer"
CMP_MODE = "cmp-mode"
CMP_SCALE = "cmp-scale"  # shared | own: one colour range for every run, or each its own
CMP_NORM = "cmp-norm"  # per_it | sum: window rows divided by their length, or as stored
CMP_HEATMAPS = "cmp-heatmaps"
CMP_LOSS = "cmp-loss"
CMP_LAYER_TOTALS = "cmp-layer-totals"
CMP_HELP = "cmp-help"
CMP_XAXIS = "cmp-xaxis"  # iteration | fraction
CMP_EX_INDEX = "cmp-ex-index"  # the training example followed across runs
CMP_EX_SPLIT = "cmp-ex-split"  # "train" | "val": an index into the training or validation split
CMP_EX_SPLIT_WRAP = "cmp-ex-split-wrap"  # hidden unless a compared run has validation examples
CMP_EX_NOTE = "cmp-ex-note"
CMP_EXAMPLE = "cmp-example"  # that example's loss and cumulative LCA in every run tracking it
CMP_BODY = "cmp-body"  # slider, heatmaps and overlays: hidden unless two runs open

# -- export (pattern-matching ids: one button per graph and format) ------------------------
EXPORT = "export"  # {"type": EXPORT, "graph": <graph id>, "fmt": "png"|"svg"|"pdf"|"csv"}
EXPORT_DOWNLOAD = "export-download"  # {"type": EXPORT_DOWNLOAD, "page": "run"|"compare"}
EXPORT_FORMATS = ("png", "svg", "pdf", "csv")
