// organ service remote: draws the state the server sends and sends commands back.
'use strict';
const $ = (id) => document.getElementById(id);
let ws = null;
let role = 'view';
let state = null;
let lastHeard = 0;
let nextId = 1;

function setLink(up) {
  const l = $('link');
  l.textContent = up ? 'live' : 'LINK LOST — reconnecting';
  l.classList.toggle('down', !up);
}

function connect() {
  ws = new WebSocket('ws://' + location.host + '/ws');
  ws.onmessage = (e) => {
    lastHeard = Date.now();
    setLink(true);
    const m = JSON.parse(e.data);
    if (m.type === 'hello') {
      role = m.role;
      document.body.classList.toggle('view', role !== 'control');
    } else if (m.type === 'state') {
      state = m.state;
      render();
    } else if (m.type === 'refused') {
      $('message').textContent = m.why;
    }
  };
  ws.onclose = () => { setLink(false); setTimeout(connect, 1000); };
}

// A phone that sleeps or walks out of the Wi-Fi hears nothing: say so.
setInterval(() => { if (Date.now() - lastHeard > 5000) setLink(false); }, 1000);

function send(cmd) {
  if (ws && ws.readyState === WebSocket.OPEN && role === 'control') {
    cmd.id = nextId++;
    ws.send(JSON.stringify(cmd));
  }
}

function text(id, t) {
  const el = $(id);
  if (el.textContent !== t) el.textContent = t;
}

function render() {
  const s = state;
  if (!s || !s.items) return;
  text('title', s.title);
  const st = $('state');
  text('state', s.state_text);
  st.className = 'state ' + s.tone;
  const item = s.playing !== null ? s.playing : s.selected;
  text('item-title', (item + 1) + '. ' + s.items[item].title);
  text('section', s.playing !== null ? (s.section || 'starting') : 'not playing');
  text('bar', s.playing !== null ? String(s.bar) : '–');
  text('of-bars', s.playing !== null && s.last_bar ? ' of ' + s.last_bar : '');
  text('registration', s.registration ? 'registration: ' + s.registration : '');
  text('time', s.time);
  text('tempo', String(s.tempo));
  text('message', s.output_error ? 'OUTPUT: ' + s.output_error : s.message);
  const go = $('go');
  const other = s.playing !== null && s.selected !== s.playing;
  if (s.playing === null) {
    text('go', 'Start ' + (s.selected + 1) + '. ' + s.items[s.selected].title);
  } else if (s.waiting) {
    text('go', 'Continue');
  } else {
    text('go', other ? 'Stop first' : 'Playing…');
  }
  go.disabled = s.playing !== null && (!s.waiting || other);
  const pause = $('pause');
  pause.classList.toggle('on', s.pause_at_verse_end);
  text('pause', s.pause_at_verse_end ? 'Will pause at end of verse ✓' : 'Pause at end of verse');
  pause.disabled = s.playing === null;
  $('stop').disabled = s.playing === null;
  renderVerses(s);
  renderItems(s);
}

function renderVerses(s) {
  const box = $('verses');
  const it = s.items[s.selected];
  const want = s.playing === null && it.verses > 1 ? it.verses : 0;
  if (box.dataset.key === s.selected + ':' + want) return;
  box.dataset.key = s.selected + ':' + want;
  box.textContent = '';
  if (!want) return;
  const label = document.createElement('span');
  label.textContent = 'Start at verse';
  box.appendChild(label);
  for (let v = 1; v <= want; v++) {
    const b = document.createElement('button');
    b.textContent = String(v);
    b.className = 'verse-btn';
    b.dataset.verse = String(v);
    b.onclick = () => send({ cmd: 'start', item: s.selected, verse: v });
    box.appendChild(b);
  }
}

function renderItems(s) {
  const ol = $('items');
  const key = JSON.stringify([s.items, s.selected, s.playing]);
  if (ol.dataset.key === key) return;
  ol.dataset.key = key;
  ol.textContent = '';
  s.items.forEach((it, i) => {
    const li = document.createElement('li');
    if (i === s.selected) li.className = 'selected';
    const mark = document.createElement('span');
    mark.className = 'mark';
    mark.textContent = i === s.playing ? '▶' : it.done ? '✓' : it.stopped ? '◐' : '';
    const body = document.createElement('span');
    body.textContent = (i + 1) + '. ' + it.title;
    const sum = document.createElement('span');
    sum.className = 'sum';
    sum.textContent = it.summary + (it.changes ? ' · ' + it.changes : '') + (it.note ? ' · ' + it.note : '');
    body.appendChild(sum);
    li.append(mark, body);
    li.onclick = () => send({ cmd: 'select', item: i });
    ol.appendChild(li);
  });
}

$('go').onclick = () => {
  if (!state) return;
  send(state.playing === null ? { cmd: 'go' } : { cmd: 'continue' });
};
$('pause').onclick = () => send({ cmd: 'pause_after_verse' });
$('tempo-down').onclick = () => send({ cmd: 'tempo', steps: -1 });
$('tempo-up').onclick = () => send({ cmd: 'tempo', steps: 1 });
$('prev').onclick = () => send({ cmd: 'select_by', by: -1 });
$('next').onclick = () => send({ cmd: 'select_by', by: 1 });
$('panic').onclick = () => send({ cmd: 'panic' });

// Stop only after a one-second hold: a brush of the thumb must not stop a hymn.
(function holdToStop() {
  const b = $('stop');
  let timer = null;
  const cancel = () => { clearTimeout(timer); timer = null; b.classList.remove('holding'); };
  b.addEventListener('pointerdown', (e) => {
    if (b.disabled) return;
    e.preventDefault();
    b.classList.add('holding');
    timer = setTimeout(() => { send({ cmd: 'stop' }); cancel(); }, 1000);
  });
  ['pointerup', 'pointerleave', 'pointercancel'].forEach((ev) => b.addEventListener(ev, cancel));
  b.addEventListener('contextmenu', (e) => e.preventDefault());
})();

connect();
