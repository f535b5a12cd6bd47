// @ts-check
// types.js — JSDoc shapes shared by the modules, for the type check (tools/jscheck). Nothing here
// runs and no page loads this file: `import('./types.js').RoomState` in a JSDoc comment is a
// type-only reference. Shapes owned by one module live in that module (Message in chat.js,
// InboundStats in peer.js, ApiResult in api.js).

/**
 * @typedef {object} Me
 * @property {string} userId
 * @property {string} displayName
 */

/**
 * The room page's shared state: room.js owns it, the other modules read it.
 * @typedef {object} RoomState
 * @property {string} conversationId
 * @property {Me} me  set from the session before any module that reads it is made
 * @property {Map<string, string>} names  userId -> display name (everyone seen, online or not)
 * @property {Map<string, string>} avatars  userId -> avatar URL
 * @property {Map<string, string>} online  userId -> display name (who is online now)
 * @property {boolean} closed  the conversation was closed
 * @property {'connecting'|'open'|'reconnecting'|'closed'} streamState
 * @property {boolean} ready  history loaded and the stream started
 */

/**
 * One event from the stream (`GET /api/v1/signaling`) or a client's relayed signal.
 * @typedef {object} ServerEvent
 * @property {string} type
 * @property {string} [fromUserId]
 * @property {any} [data]  the payload, whose shape depends on `type` (see the typedefs below)
 */

/**
 * A participant's media in a call (`media-state`, and `media` in `call-join`). Absent flags count as on.
 * @typedef {object} MediaState
 * @property {boolean} [audio]
 * @property {boolean} [video]
 * @property {boolean} [screen]
 */

/**
 * Our own media: whether the microphone and camera are on, and whether the screen replaces the camera.
 * @typedef {{ audio: boolean, video: boolean, screen: boolean }} LocalMediaState
 */

/**
 * `call-join`: someone joined the call (`reply`: an answer to our own call-join or call-query).
 * @typedef {object} CallJoinData
 * @property {MediaState} [media]
 * @property {boolean} [reply]
 */

/**
 * `call-speaker`, from the relay's audio levels: the dominant speaker, and (last-N) whose video it forwards.
 * @typedef {object} CallSpeakerData
 * @property {string | null} [speaker]
 * @property {string[]} [forwarded]
 */

/**
 * `offer` / `answer` (mesh): a session description; `ice-candidate`: an RTCIceCandidateInit.
 * @typedef {object} DescriptionData
 * @property {RTCSdpType} [type]
 * @property {string} [sdp]
 */

/**
 * `relay-signal`: the relay's side of negotiation (`data` is the SDP), or `ready` once it receives
 * what was negotiated.
 * @typedef {object} RelaySignal
 * @property {string} type  offer, answer or ready
 * @property {unknown} [data]
 */

export {};
