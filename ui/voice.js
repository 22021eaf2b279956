// The page's voice mode (ui/voice.py): run once at page load with the config the server gives
// ({max_seconds, speaks, end_ms, filename}). Listens while on; finds each question's end by loudness (an adaptive
// noise floor; END_MS of quiet after speech), sends it through the composer as a recording, plays the answer's
// sound as it arrives (window.__voice.heard, from the hidden #voice-out textbox), and on new speech while an answer
// is being written or spoken, silences it and presses Stop (barge-in). window.__voice.timings holds the latencies
// it measured, for bench/voice.py.
(config) => {
    if (window.__voice) return;
    const cfg = JSON.parse(config || '{}');
    const $ = (selector) => document.querySelector(selector);
    const V = window.__voice = {on: false, recording: false, queue: [], timings: [], turn: null, next: 0,
                                 stopped: new Set(), noise: 0, loudRun: 0, preroll: []};
    const END_MS = cfg.end_ms;
    const text = (cfg.text || {})[window.__assistantLanguage] || (cfg.text || {}).en || {};
    // A sentence of the page's catalog (page.voice.*) in the page's language, its {fields} filled in.
    const T = (key, params = {}) => (text[key] || key).replace(/\{(\w+)\}/g, (_, name) => params[name]);
    const say = (text) => { const el = $('#voice-state'); if (el) el.textContent = text; };
    const button = () => $('#voice-toggle');
    const idle = () => { const stop = $('#stop'), box = $('#composer textarea');
                         return stop && stop.disabled && box && !box.disabled; };
    const until = (test, ms) => new Promise((resolve) => { const t0 = Date.now();
        const tick = () => { if (test()) resolve(true); else if (Date.now() - t0 > ms) resolve(false); else setTimeout(tick, 50); };
        tick(); });
    const listening = () => { if (V.on && !V.recording && !V.playing) say(T('page.voice.listening')); };
    const setMode = (on) => { const box = $('#voice-mode textarea, #voice-mode input');
        box.value = `${on ? 'on' : 'off'}:${Date.now()}`; box.dispatchEvent(new Event('input', {bubbles: true})); };

    V.audio = new Audio();
    V.audio.addEventListener('playing', () => {
        if (V.awaitingFirst) { V.awaitingFirst = false;
            V.timings.push({kind: 'first_audio', ms: performance.now() - V.endOfSpeech}); }
        V.playing = true; say(T('page.voice.speaking'));
    });
    V.audio.addEventListener('ended', () => { V.playing = false; playNext(); });
    function playNext() {
        if (!V.on || V.playing) return;
        const next = V.queue.shift();
        if (next) { V.playing = true; V.audio.src = next; V.audio.play().catch(() => { V.playing = false; }); }
        else listening();
    }
    function silence() {
        V.queue = []; V.audio.pause(); V.audio.removeAttribute('src'); V.playing = false;
        if (V.turn) V.stopped.add(V.turn);
    }
    V.heard = (value) => {
        if (!value || !V.on) return;
        const update = JSON.parse(value);
        if (update.turn !== V.turn) { V.turn = update.turn; V.next = 0; }
        if (V.stopped.has(update.turn)) return;
        if (V.awaitingPiece && update.pieces.length) {
            V.awaitingPiece = false; V.timings.push({kind: 'first_piece', ms: performance.now() - V.endOfSpeech}); }
        update.pieces.forEach((piece, i) => { if (update.from + i >= V.next) { V.queue.push(piece); V.next = update.from + i + 1; } });
        if (update.error) say(T('page.voice.no_sound', {error: update.error}));
        playNext();
    };

    async function send(wav, cut) {
        say(cut ? T('page.voice.cut', {s: cfg.max_seconds}) : T('page.voice.thinking'));
        if (!await until(idle, 600000)) return;
        const input = $('#composer input[type=file]');
        const files = new DataTransfer();
        files.items.add(new File([wav], cfg.filename, {type: 'audio/wav'}));
        input.files = files.files;
        input.dispatchEvent(new Event('change', {bubbles: true}));
        if (!await until(() => $('#composer [aria-label="File thumbnail"]'), 30000)) { say(T('page.voice.not_attached')); return; }
        V.awaitingFirst = true; V.awaitingPiece = true;
        V.timings.push({kind: 'sent', ms: performance.now() - V.endOfSpeech});
        $('#composer button[aria-label="Submit"]').click();
        await until(() => !idle(), 5000);
        await until(idle, 600000);
        if (V.on && !V.playing && !V.queue.length) listening();
    }
    function bargeIn() {
        const t0 = performance.now();
        if (V.playing || V.queue.length) { silence(); V.timings.push({kind: 'barge_in', ms: performance.now() - V.onset}); }
        const stop = $('#stop');
        if (stop && !stop.disabled) stop.click();
        V.bargedAt = t0;
    }
    function wav16k(chunks, rate) {
        const total = chunks.reduce((n, c) => n + c.length, 0), ratio = rate / 16000;
        const out = new Int16Array(Math.floor(total / ratio));
        const all = new Float32Array(total); let at = 0; for (const c of chunks) { all.set(c, at); at += c.length; }
        for (let i = 0; i < out.length; i++) {
            const x = all[Math.min(total - 1, Math.floor(i * ratio))];
            out[i] = Math.max(-32768, Math.min(32767, Math.round(x * 32767)));
        }
        const head = new DataView(new ArrayBuffer(44));
        const text = (o, s) => { for (let i = 0; i < s.length; i++) head.setUint8(o + i, s.charCodeAt(i)); };
        text(0, 'RIFF'); head.setUint32(4, 36 + out.length * 2, true); text(8, 'WAVE'); text(12, 'fmt ');
        head.setUint32(16, 16, true); head.setUint16(20, 1, true); head.setUint16(22, 1, true);
        head.setUint32(24, 16000, true); head.setUint32(28, 32000, true); head.setUint16(32, 2, true);
        head.setUint16(34, 16, true); text(36, 'data'); head.setUint32(40, out.length * 2, true);
        return new Blob([head, out], {type: 'audio/wav'});
    }
    function frame(x, rate) {
        let sum = 0; for (let i = 0; i < x.length; i++) sum += x[i] * x[i];
        const rms = Math.sqrt(sum / x.length), now = performance.now();
        const busy = V.playing || !idle();
        const threshold = Math.max(0.01, V.noise * 3) * (V.playing ? 2 : 1);
        const loud = rms > threshold;
        if (!V.recording) {
            // The floor learns from quiet frames (and creeps up through steady sound), starting low: someone already
            // talking when voice mode starts must not be taken for the room's noise.
            V.noise = !V.noise ? Math.min(rms, 0.003) : !loud ? 0.95 * V.noise + 0.05 * rms : V.playing ? V.noise : V.noise * 1.01;
            V.preroll.push(x); if (V.preroll.length > 8) V.preroll.shift();
            if (loud) { if (!V.loudRun) V.onset = now; V.loudRun++; } else V.loudRun = 0;
            if (V.loudRun >= 3) {
                V.recording = true; V.chunks = V.preroll.slice(); V.preroll = []; V.lastLoud = now; V.loudRun = 0;
                if (busy) bargeIn();
                say(T('page.voice.hearing'));
            }
            return;
        }
        V.chunks.push(x);
        if (loud) V.lastLoud = now;
        const seconds = V.chunks.length * x.length / rate;
        const cut = seconds >= cfg.max_seconds - 0.1;  // a frame short of the limit, which the server checks
        if (now - V.lastLoud > END_MS || cut) {
            V.recording = false; V.endOfSpeech = cut ? now : V.lastLoud;
            const chunks = V.chunks; V.chunks = [];
            send(wav16k(cut ? chunks : chunks.slice(0, chunks.length - Math.floor(END_MS / 1000 * rate / x.length) + 4), rate), cut);
        }
    }

    async function start() {
        if (!window.isSecureContext || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
            say(T('page.voice.insecure'));
            return;
        }
        try {
            V.stream = await navigator.mediaDevices.getUserMedia(
                {audio: {echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1}});
        } catch (error) {
            say(error.name === 'NotAllowedError' ? T('page.voice.denied') : T('page.voice.no_microphone', {name: error.name}));
            return;
        }
        V.context = new AudioContext();
        const source = V.context.createMediaStreamSource(V.stream);
        V.node = V.context.createScriptProcessor(2048, 1, 1);
        V.node.onaudioprocess = (event) => {
            event.outputBuffer.getChannelData(0).fill(0);
            if (V.on) frame(new Float32Array(event.inputBuffer.getChannelData(0)), V.context.sampleRate);
        };
        source.connect(V.node); V.node.connect(V.context.destination);
        V.on = true; V.noise = 0; V.loudRun = 0; V.preroll = [];
        setMode(true);
        button().textContent = T('page.voice.end');
        if (!cfg.speaks) say(T('page.voice.listening_silent'));
        else listening();
    }
    function end() {
        V.on = false; V.recording = false; silence();
        if (V.stream) V.stream.getTracks().forEach((track) => track.stop());
        if (V.context) V.context.close();
        setMode(false);
        button().textContent = T('page.voice.button');
        say('');
    }
    button().addEventListener('click', () => { if (V.on) end(); else start(); });
    // Stop also silences the answer being spoken.
    document.addEventListener('click', (event) => {
        if (event.target.closest && event.target.closest('#stop') && (V.playing || V.queue.length)) {
            const t0 = performance.now(); silence(); V.timings.push({kind: 'stop', ms: performance.now() - t0});
        }
    }, true);
}
