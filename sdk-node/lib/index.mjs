// ESM entry: the same classes as the CommonJS one (one copy of the state, whichever loads).
import cjs from './index.js';

export const { VyxWorker, VyxRequest, VyxResponse, defaults, upgradeWebSocket } = cjs;
export default cjs;
