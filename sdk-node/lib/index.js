'use strict';
// @vyx/worker: vyx workers in Node.js, the protocol done by the Rust core (vyx-core).
const { VyxWorker, defaults } = require('./worker');
const { VyxRequest } = require('./request');
const { VyxResponse } = require('./response');
const { upgradeWebSocket } = require('./fetch');

module.exports = { VyxWorker, VyxRequest, VyxResponse, defaults, upgradeWebSocket };
