// The input-kind registry of the page: one module per kind registers how to build its requests.
//
// registerKind(name, {
//   mount(container, model, ctx): build the inputs into container; call ctx.predict(request) to ask.
//       Returns an optional cleanup function (stop a recording...) run when another model is chosen.
//   renderSeen(input, prediction): an element showing what the model saw (/predict?explain=1's
//       "input"; the whole prediction for the kind's own notes), or null.
// })
// A request: {body, headers, curl: [curl arguments before the URL], python: "ms.call(...)" (the client
//             call that returns the Prediction), file(): nodes saying which file the snippets read, or null}.

const kinds = new Map();

export function registerKind(name, kind) {
  kinds.set(name, kind);
}

export function getKind(name) {
  return kinds.get(name);
}
