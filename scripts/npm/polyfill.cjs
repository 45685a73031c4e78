// js-ipfs 0.66.1 calls Promise.withResolvers, which Node.js has only from version 22; the
// machines have Node.js 20. Loaded with `node -r` before jsipfs.
if (!Promise.withResolvers) {
  Promise.withResolvers = function () {
    let resolve, reject;
    const promise = new Promise((res, rej) => {
      resolve = res;
      reject = rej;
    });
    return { promise, resolve, reject };
  };
}
