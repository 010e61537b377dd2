// Quarantine review: draw mask rectangles on a canvas over the preview.
// Each rectangle is written into the form's "regions" field (mask) or "image_area" field
// (the diagnostic image, left out of OCR), as the "draw" radio says, in the image's own
// pixels (x,y,width,height;...), scaled from the preview by data-columns/data-rows.
// No inline script (the CSP allows only 'self'); the form also works without JavaScript.
(function () {
  "use strict";
  var stage = document.querySelector(".mask-stage");
  var img = document.getElementById("q-preview");
  var canvas = document.getElementById("q-canvas");
  var fields = { regions: document.getElementById("regions"),
                 image_area: document.getElementById("image_area") };
  var field = fields.regions;
  var clear = document.getElementById("mask-clear");
  if (!stage || !img || !canvas || !field) { return; }
  var boxes = [];  // mask rectangles, in image pixels
  var areas = [];  // image-area rectangles
  var start = null;
  var current = null;

  function read(input) {
    var out = [];
    if (!input) { return out; }
    input.value.split(";").forEach(function (part) {
      var v = part.split(",").map(function (n) { return parseInt(n, 10); });
      if (v.length === 4 && v.every(function (n) { return !isNaN(n); })) { out.push(v); }
    });
    return out;
  }
  function parse() { boxes = read(fields.regions); areas = read(fields.image_area); }
  function mode() {
    var checked = document.querySelector('input[name="draw"]:checked');
    return checked && checked.value === "image_area" && fields.image_area ? "image_area" : "regions";
  }
  function scale() {
    var cols = parseInt(stage.dataset.columns, 10) || img.naturalWidth || 1;
    var rows = parseInt(stage.dataset.rows, 10) || img.naturalHeight || 1;
    return { x: cols / canvas.width, y: rows / canvas.height, cols: cols, rows: rows };
  }
  function draw() {
    var ctx = canvas.getContext("2d");
    var s = scale();
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.lineWidth = 2;
    ctx.strokeStyle = "#3fa7ff";
    areas.forEach(function (b) { ctx.strokeRect(b[0] / s.x, b[1] / s.y, b[2] / s.x, b[3] / s.y); });
    ctx.strokeStyle = "#f0a500";
    ctx.fillStyle = "rgba(0, 0, 0, 0.6)";
    boxes.concat(current ? [current] : []).forEach(function (b) {
      ctx.fillRect(b[0] / s.x, b[1] / s.y, b[2] / s.x, b[3] / s.y);
      ctx.strokeRect(b[0] / s.x, b[1] / s.y, b[2] / s.x, b[3] / s.y);
    });
  }
  function fit() {
    canvas.width = img.clientWidth;
    canvas.height = img.clientHeight;
    canvas.style.width = img.clientWidth + "px";
    canvas.style.height = img.clientHeight + "px";
    draw();
  }
  function point(event) {
    var r = canvas.getBoundingClientRect();
    var s = scale();
    var x = Math.max(0, Math.min(canvas.width, event.clientX - r.left));
    var y = Math.max(0, Math.min(canvas.height, event.clientY - r.top));
    return [Math.round(x * s.x), Math.round(y * s.y)];
  }
  function box(a, b) {
    var x = Math.min(a[0], b[0]), y = Math.min(a[1], b[1]);
    return [x, y, Math.abs(a[0] - b[0]), Math.abs(a[1] - b[1])];
  }
  function join(list) { return list.map(function (b) { return b.join(","); }).join(";"); }
  function write() {
    fields.regions.value = join(boxes);
    if (fields.image_area) { fields.image_area.value = join(areas); }
  }
  canvas.addEventListener("mousedown", function (e) { start = point(e); current = null; });
  canvas.addEventListener("mousemove", function (e) {
    if (start) { current = box(start, point(e)); draw(); }
  });
  window.addEventListener("mouseup", function (e) {
    if (!start) { return; }
    var b = box(start, point(e));
    start = null;
    current = null;
    if (b[2] > 0 && b[3] > 0) { (mode() === "image_area" ? areas : boxes).push(b); write(); }
    draw();
  });
  Object.keys(fields).forEach(function (k) {
    if (fields[k]) { fields[k].addEventListener("change", function () { parse(); draw(); }); }
  });
  if (clear) {
    clear.addEventListener("click", function () { boxes = []; areas = []; write(); draw(); });
  }
  parse();
  if (img.complete) { fit(); } else { img.addEventListener("load", fit); }
  window.addEventListener("resize", fit);
}());
