// The lineage diagram: image and datasets feed the job, the job produced the model. SVG
// built with DOM calls; labels are text nodes, cut short, with invisible characters shown.
import { plain } from './dom.js';

const SVG = 'http://www.w3.org/2000/svg';
const WIDTH = 340;
const IN_W = 150;
const OUT_W = 142;
const BOX_H = 46;
const GAP = 10;
const MAX_INPUTS = 8;

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function box(x, y, width, { title, subtitle, status }) {
  const group = svg('g', { class: `node ${status}` });
  group.append(
    svg('rect', { x, y, width, height: BOX_H, rx: 8 }),
    svg('text', { x: x + 9, y: y + 19, class: 'title' }, plain(title, 20)),
    svg('text', { x: x + 9, y: y + 36, class: 'subtitle' }, plain(subtitle, Math.floor((width - 14) / 6.4))),
  );
  return group;
}

function arrow(x1, y1, x2, y2, vertical = false) {
  const d = vertical
    ? `M${x1},${y1} L${x2},${y2 - 6}`
    : `M${x1},${y1} C${(x1 + x2) / 2},${y1} ${(x1 + x2) / 2},${y2} ${x2 - 6},${y2}`;
  return svg('path', { d, class: 'edge', 'marker-end': 'url(#arrow)' });
}

const short = (digest) => (digest ? digest.slice(0, 19) + '…' : '—');

/**
 * The diagram for `nodes`: { inputs: [{title, subtitle, status}], job, model }, where
 * status is one of passed, failed, not-checked, pending.
 */
export function lineageDiagram({ inputs, job, model }) {
  // Inputs in a column on the left, each feeding the job on the right; the model below it.
  // A column keeps every edge clear of every box, whatever the number of inputs.
  const shown = inputs.slice(0, MAX_INPUTS);
  if (inputs.length > MAX_INPUTS) shown[MAX_INPUTS - 1] = { title: `+${inputs.length - MAX_INPUTS + 1} more`, subtitle: 'listed below', status: 'not-checked' };
  const inputsBottom = shown.length * (BOX_H + GAP) - GAP + 2;
  const outX = WIDTH - OUT_W - 4;
  const jobY = Math.max(2, Math.round(inputsBottom / 2 - BOX_H - 14));
  const modelY = jobY + BOX_H + 34;
  const height = Math.max(inputsBottom, modelY + BOX_H) + 4;
  const root = svg('svg', { viewBox: `0 0 ${WIDTH} ${height}`, role: 'img', 'aria-label': 'Lineage: image and datasets, to the job, to the model', class: 'diagram' });
  const defs = svg('defs');
  const marker = svg('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 5, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' });
  marker.append(svg('path', { d: 'M0,0 L10,5 L0,10 z', class: 'arrowhead' }));
  defs.append(marker);
  root.append(defs);
  shown.forEach((input, index) => {
    const y = 2 + index * (BOX_H + GAP);
    root.append(arrow(4 + IN_W, y + BOX_H / 2, outX, jobY + BOX_H / 2));
    root.append(box(4, y, IN_W, input));
  });
  root.append(box(outX, jobY, OUT_W, job));
  root.append(arrow(outX + OUT_W / 2, jobY + BOX_H, outX + OUT_W / 2, modelY, true));
  root.append(box(outX, modelY, OUT_W, model));
  return root;
}

export { short };
