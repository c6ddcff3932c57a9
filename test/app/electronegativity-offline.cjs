// Preloaded into the electronegativity run: the tool fetches translations and Electron's release
// list over the network; tests send nothing off this machine, so both requests fail at once.
const Module = require('node:module');
const load = Module._load;
Module._load = function (request, parent, isMain) {
  if (request === 'got') return () => Promise.reject(new Error('offline: no network in tests'));
  return load.call(this, request, parent, isMain);
};
