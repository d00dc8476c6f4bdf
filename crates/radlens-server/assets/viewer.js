// A canvas viewer for one radiograph: window/level through a 16-bit lookup table,
// zoom about the cursor and pan, translucent overlays, the CTR's two widths and
// highlighted evidence boxes drawn in image coordinates.
//
// Mouse: left-drag window/level (horizontal: width, vertical: level); shift-, middle- or
// right-drag pan; wheel zoom. Keys: r reset, i invert.

export class Viewer {
  constructor(canvas, onStatus = () => {}) {
    this.canvas = canvas;
    this.ctx = canvas.getContext('2d');
    this.base = document.createElement('canvas');
    this.onStatus = onStatus;
    this.pixels = null;
    this.width = 0;
    this.height = 0;
    this.center = 0.5;
    this.window = 1.0;
    this.invert = false;
    this.zoom = 1;
    this.pan = { x: 0, y: 0 };
    this.overlays = new Map(); // name -> { img, visible }
    this.opacity = 0.6;
    this.ctr = null; // { heart: {x0,x1,y}, thorax: {x0,x1,y}, label }
    this.showCtr = true;
    this.highlights = []; // [{x_min,y_min,x_max,y_max,label}]
    this.lastRender = { overlays: [], ctr: false, highlights: 0 };
    this.bindInput();
    new ResizeObserver(() => this.resize()).observe(canvas);
  }

  setImage(pixels, width, height) {
    if (pixels.length !== width * height) throw new Error(`pixel count ${pixels.length} is not ${width}×${height}`);
    this.pixels = pixels;
    this.width = width;
    this.height = height;
    this.base.width = width;
    this.base.height = height;
    this.renderBase();
    this.reset();
  }

  // Re-render the grey image through the window/level lookup table.
  renderBase() {
    if (!this.pixels) return;
    const lut = new Uint8ClampedArray(65536);
    const lo = (this.center - this.window / 2) * 65535;
    const span = Math.max(this.window * 65535, 1);
    for (let v = 0; v < 65536; v++) {
      const g = ((v - lo) / span) * 255;
      lut[v] = this.invert ? 255 - g : g;
    }
    const ctx = this.base.getContext('2d');
    const img = ctx.createImageData(this.width, this.height);
    const d = img.data;
    const p = this.pixels;
    for (let i = 0, j = 0; i < p.length; i++, j += 4) {
      const g = lut[p[i]];
      d[j] = g; d[j + 1] = g; d[j + 2] = g; d[j + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
    this.status();
  }

  setWindow(center, window) {
    this.center = Math.min(Math.max(center, -1), 2);
    this.window = Math.min(Math.max(window, 0.01), 2);
    this.renderBase();
    this.render();
  }

  reset() {
    this.zoom = 1;
    this.pan = { x: 0, y: 0 };
    this.render();
  }

  setOverlay(name, img, visible) {
    this.overlays.set(name, { img, visible });
    this.render();
  }

  showOverlay(name, visible) {
    const o = this.overlays.get(name);
    if (o) { o.visible = visible; this.render(); }
  }

  setHighlights(boxes) {
    this.highlights = boxes;
    this.render();
  }

  resize() {
    const r = this.canvas.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    this.canvas.width = Math.max(1, Math.round(r.width * dpr));
    this.canvas.height = Math.max(1, Math.round(r.height * dpr));
    this.render();
  }

  // Image-to-canvas scale and offset.
  transform() {
    const fit = Math.min(this.canvas.width / this.width, this.canvas.height / this.height);
    const s = fit * this.zoom;
    return {
      s,
      ox: (this.canvas.width - this.width * s) / 2 + this.pan.x,
      oy: (this.canvas.height - this.height * s) / 2 + this.pan.y,
    };
  }

  render() {
    const ctx = this.ctx;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
    if (!this.pixels) return;
    const { s, ox, oy } = this.transform();
    ctx.setTransform(s, 0, 0, s, ox, oy);
    ctx.imageSmoothingEnabled = s < 1;
    ctx.drawImage(this.base, 0, 0);
    const drawn = [];
    ctx.globalAlpha = this.opacity;
    for (const [name, o] of this.overlays) {
      if (o.visible && o.img) { ctx.drawImage(o.img, 0, 0, this.width, this.height); drawn.push(name); }
    }
    ctx.globalAlpha = 1;
    const px = 1 / s; // one screen pixel in image units
    if (this.showCtr && this.ctr) {
      this.segment(this.ctr.heart, '#ff5050', px);
      this.segment(this.ctr.thorax, '#40e0ff', px);
      ctx.font = `${14 * px}px system-ui`;
      ctx.fillStyle = '#ffffff';
      ctx.fillText(this.ctr.label, this.ctr.thorax.x0, this.ctr.thorax.y + 20 * px);
    }
    for (const b of this.highlights) {
      ctx.fillStyle = 'rgba(255, 200, 87, 0.18)';
      ctx.fillRect(b.x_min, b.y_min, b.x_max - b.x_min + 1, b.y_max - b.y_min + 1);
      ctx.strokeStyle = '#ffc857';
      ctx.lineWidth = 3 * px;
      ctx.strokeRect(b.x_min, b.y_min, b.x_max - b.x_min + 1, b.y_max - b.y_min + 1);
      if (b.label) {
        ctx.font = `${13 * px}px system-ui`;
        ctx.fillStyle = '#ffc857';
        ctx.fillText(b.label, b.x_min, b.y_min - 4 * px);
      }
    }
    this.lastRender = { overlays: drawn, ctr: Boolean(this.showCtr && this.ctr), highlights: this.highlights.length };
  }

  // A horizontal measurement line with end ticks.
  segment(seg, colour, px) {
    const ctx = this.ctx;
    ctx.strokeStyle = colour;
    ctx.lineWidth = 2 * px;
    ctx.beginPath();
    ctx.moveTo(seg.x0, seg.y); ctx.lineTo(seg.x1, seg.y);
    for (const x of [seg.x0, seg.x1]) { ctx.moveTo(x, seg.y - 8 * px); ctx.lineTo(x, seg.y + 8 * px); }
    ctx.stroke();
  }

  status(extra = '') {
    this.onStatus(`W ${(this.window * 100).toFixed(0)}%  L ${(this.center * 100).toFixed(0)}%  zoom ${this.zoom.toFixed(2)}×${this.invert ? '  inverted' : ''}${extra}`);
  }

  bindInput() {
    const c = this.canvas;
    c.tabIndex = 0;
    c.addEventListener('contextmenu', e => e.preventDefault());
    c.addEventListener('pointerdown', e => {
      c.setPointerCapture(e.pointerId);
      const panning = e.shiftKey || e.button === 1 || e.button === 2;
      const start = { x: e.clientX, y: e.clientY, center: this.center, window: this.window, pan: { ...this.pan } };
      const move = m => {
        const dx = m.clientX - start.x, dy = m.clientY - start.y;
        if (panning) {
          const dpr = window.devicePixelRatio || 1;
          this.pan = { x: start.pan.x + dx * dpr, y: start.pan.y + dy * dpr };
          this.render();
        } else {
          this.setWindow(start.center - dy / 500, start.window + dx / 500);
        }
      };
      const up = () => { c.removeEventListener('pointermove', move); c.removeEventListener('pointerup', up); };
      c.addEventListener('pointermove', move);
      c.addEventListener('pointerup', up);
    });
    c.addEventListener('wheel', e => {
      e.preventDefault();
      const r = c.getBoundingClientRect();
      const dpr = window.devicePixelRatio || 1;
      const mx = (e.clientX - r.left) * dpr, my = (e.clientY - r.top) * dpr;
      const before = this.transform();
      const ix = (mx - before.ox) / before.s, iy = (my - before.oy) / before.s;
      this.zoom = Math.min(Math.max(this.zoom * Math.exp(-e.deltaY / 500), 0.2), 20);
      const after = this.transform();
      // keep the image point under the cursor where it was
      this.pan.x += mx - (after.ox + ix * after.s);
      this.pan.y += my - (after.oy + iy * after.s);
      this.render();
      this.status();
    }, { passive: false });
    c.addEventListener('keydown', e => {
      if (e.key === 'r') { this.center = 0.5; this.window = 1; this.invert = false; this.renderBase(); this.reset(); }
      if (e.key === 'i') { this.invert = !this.invert; this.renderBase(); this.render(); }
    });
  }
}
