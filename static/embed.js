/*! chats3 embed SDK — https://<your chats3>/static/embed.js
 *
 *   <script src="https://chat.example.com/static/embed.js"></script>
 *   const chat = Chats3.mount(document.getElementById('chat'), {
 *     ticket, signature,                                         // or: src: 'https://…/embed?ticket=…&signature=…'
 *     theme: 'auto', height: 'auto', minHeight: 320, maxHeight: 720, onEvent: (e) => console.log(e),
 *     features: { call: true, record: false, leave: false },    // controls shown in the frame (default: none)
 *   });
 *   chat.on('unread', (e) => badge.textContent = e.count);
 *
 * Plain script, no dependencies. It defines `window.Chats3`; loaded with `import` it does the same
 * (`import './embed.js'; const { Chats3 } = globalThis;`). `baseUrl` defaults to the origin this
 * file was loaded from with `<script src>`; imported as a module it cannot know, so pass `baseUrl`.
 * Messages are accepted only from the iframe's window at the chats3 origin, and commands are posted
 * to that exact origin, never '*'.
 */
(function (global) {
  'use strict';

  var ALLOW = 'camera; microphone; display-capture; clipboard-write';
  var EVENTS = ['ready', 'unread', 'message', 'call', 'resize', 'error', 'left'];
  var THEMES = ['light', 'dark', 'auto'];
  // Room controls hidden in a frame unless the host turns them on (the original hid all three).
  var FEATURES = ['call', 'record', 'leave'];

  // Where this file came from: the default `baseUrl`. `document.currentScript` is this <script>
  // element only while a classic script runs (async and defer included), so it is read now; it is
  // null when the file is imported as a module or evaluated some other way.
  var scriptOrigin = (function () {
    try {
      var s = global.document && global.document.currentScript;
      var src = s && s.src ? new URL(s.src, global.location.href) : null;
      return src && (src.protocol === 'https:' || src.protocol === 'http:') ? src.origin : null;
    } catch (e) {
      return null;
    }
  })();

  function fail(msg) {
    throw new Error('Chats3.mount: ' + msg);
  }

  /** `{call: true, leave: true}` → 'call,leave'; only `true` turns a control on. */
  function featureList(features) {
    if (features === undefined || features === null) return '';
    if (typeof features !== 'object') fail('features must be an object such as {call: true, record: true, leave: true}');
    return FEATURES.filter(function (f) { return features[f] === true; }).join(',');
  }

  function resolveSrc(opts) {
    var url;
    if (opts.src) {
      url = new URL(String(opts.src), global.location.href);
    } else {
      if (typeof opts.ticket !== 'string' || typeof opts.signature !== 'string') {
        fail('pass either src, or ticket (the exact signed JSON string) + signature');
      }
      var base = opts.baseUrl || scriptOrigin;
      if (!base) fail('pass baseUrl (the chats3 origin): embed.js was not loaded with a <script src>, so it cannot tell where chats3 is');
      url = new URL('/embed', String(base));
      url.searchParams.set('ticket', opts.ticket);
      url.searchParams.set('signature', opts.signature);
    }
    var features = featureList(opts.features);
    if (features) url.searchParams.set('features', features);
    return url;
  }

  function cssSize(v, fallback) {
    if (v === undefined || v === null || v === '') return fallback;
    return typeof v === 'number' ? v + 'px' : String(v);
  }

  // The largest height a `resize` event may set (px): a bound on what a confused page could ask.
  var MAX_AUTO_HEIGHT = 100000;

  /**
   * Creates the chat iframe inside `element` and returns a handle:
   * {iframe, origin, unread, on(type, fn) -> off(), off(type, fn), setTheme(t), focus(), leave(), destroy()}.
   */
  function mount(element, options) {
    var opts = options || {};
    if (!element || typeof element.appendChild !== 'function') fail('element must be a DOM element');
    var url = resolveSrc(opts);
    if (url.protocol !== 'https:' && url.protocol !== 'http:') fail('src must be an http(s) URL');
    var origin = url.origin;

    var iframe = document.createElement('iframe');
    iframe.src = url.href;
    iframe.title = opts.title || 'Chat';
    iframe.setAttribute('allow', ALLOW);
    iframe.setAttribute('allowfullscreen', '');
    iframe.referrerPolicy = 'strict-origin-when-cross-origin';
    iframe.style.border = '0';
    iframe.style.display = 'block';
    iframe.style.width = cssSize(opts.width, '100%');
    // height: 'auto' follows the room's `resize` events; minHeight / maxHeight bound it (CSS does
    // the clamping, so any CSS length works). It starts at 400 px until the room has measured itself.
    var autoHeight = opts.height === 'auto';
    iframe.style.height = autoHeight ? '400px' : cssSize(opts.height, '600px');
    if (opts.minHeight !== undefined) iframe.style.minHeight = cssSize(opts.minHeight, '');
    if (opts.maxHeight !== undefined) iframe.style.maxHeight = cssSize(opts.maxHeight, '');

    var handlers = {};
    var ready = false;
    var queue = [];
    var theme = THEMES.indexOf(opts.theme) >= 0 ? opts.theme : null;
    var destroyed = false;

    function emit(evt) {
      var list = (handlers[evt.type] || []).concat(handlers['*'] || []);
      if (typeof opts.onEvent === 'function') list.push(opts.onEvent);
      for (var i = 0; i < list.length; i += 1) {
        try {
          list[i](evt);
        } catch (err) {
          setTimeout(function () { throw err; }, 0); // report, but keep delivering
        }
      }
    }

    function send(command, extra) {
      if (destroyed) return;
      var msg = { target: 'chats3', command: command };
      for (var k in extra || {}) if (Object.prototype.hasOwnProperty.call(extra, k)) msg[k] = extra[k];
      // Before `ready` the frame may still show another document (about:blank, a redirect): queue.
      if (!ready || !iframe.contentWindow) {
        queue.push(msg);
        return;
      }
      iframe.contentWindow.postMessage(msg, origin);
    }

    function onMessage(event) {
      if (event.source !== iframe.contentWindow || event.origin !== origin) return;
      var data = event.data;
      if (!data || typeof data !== 'object' || data.source !== 'chats3' || EVENTS.indexOf(data.type) < 0) return;
      if (data.type === 'ready') {
        ready = true;
        var pending = queue;
        queue = [];
        if (theme && theme !== 'auto') pending.unshift({ target: 'chats3', command: 'setTheme', theme: theme });
        for (var i = 0; i < pending.length; i += 1) iframe.contentWindow.postMessage(pending[i], origin);
      }
      if (data.type === 'unread') handle.unread = data.count;
      if (data.type === 'resize' && autoHeight && typeof data.height === 'number' && data.height > 0) {
        iframe.style.height = Math.ceil(Math.min(data.height, MAX_AUTO_HEIGHT)) + 'px';
      }
      emit(data);
    }

    global.addEventListener('message', onMessage);
    element.appendChild(iframe);

    var handle = {
      iframe: iframe,
      origin: origin,
      unread: 0,
      on: function (type, fn) {
        (handlers[type] = handlers[type] || []).push(fn);
        return function () { handle.off(type, fn); };
      },
      off: function (type, fn) {
        handlers[type] = (handlers[type] || []).filter(function (h) { return h !== fn; });
      },
      setTheme: function (t) {
        if (THEMES.indexOf(t) < 0) throw new Error('Chats3: theme must be light, dark or auto');
        theme = t;
        send('setTheme', { theme: t });
      },
      focus: function () {
        iframe.focus(); // a cross-origin frame may only move focus inside itself once it has focus
        send('focus');
      },
      leave: function () {
        send('leave');
      },
      destroy: function () {
        destroyed = true;
        global.removeEventListener('message', onMessage);
        handlers = {};
        if (iframe.parentNode) iframe.parentNode.removeChild(iframe);
      },
    };
    return handle;
  }

  // `baseUrl`: the chats3 origin mount() uses when given none (null when this file was imported).
  global.Chats3 = { mount: mount, version: '1', baseUrl: scriptOrigin };
})(typeof window !== 'undefined' ? window : globalThis);
