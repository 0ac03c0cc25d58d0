// Stand-ins for what the page gives its modules: localStorage and a server that answers when told.

export function memoryStorage(initial = {}) {
  const data = new Map(Object.entries(initial));
  return {
    data,
    getItem: (k) => (data.has(k) ? data.get(k) : null),
    setItem: (k, v) => { data.set(k, String(v)); },
    removeItem: (k) => { data.delete(k); },
  };
}

// Every call is recorded and stays pending until the test resolves or rejects it.
export function controlledServer() {
  const calls = [];
  function call(payload, options) {
    let resolve, reject;
    const promise = new Promise((res, rej) => { resolve = res; reject = rej; });
    calls.push({ payload, options, resolve, reject });
    return promise;
  }
  return { calls, call };
}

// Let pending promise callbacks run.
export const settle = () => new Promise((resolve) => setImmediate(resolve));

export function answer(hash, label = "red", kind = "accept") {
  return { id: "row" + hash, _task_hash: hash, _input_hash: hash, answer: kind, accept: kind === "accept" ? [label] : [] };
}
