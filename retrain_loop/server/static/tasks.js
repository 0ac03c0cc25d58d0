/* What the page reads from a task: its identity, its options, the model's guess.
 *
 * Pure functions of the task and the project's labels: no DOM, so Node can test them.
 */

// The key a task is known by on this page: its task hash, else its id, else its content.
export function taskKey(task) {
  if (task && task._task_hash !== undefined && task._task_hash !== null) {
    return "t:" + String(task._task_hash);
  }
  if (task && task.id !== undefined) return "i:" + String(task.id);
  return "j:" + JSON.stringify(task);
}

// A task's own options ({id, text} objects or plain values), else the project's labels.
export function optionsFor(task, labels) {
  if (Array.isArray(task.options) && task.options.length) {
    return task.options.map((o) => {
      if (o && typeof o === "object") {
        const id = o.id !== undefined ? String(o.id) : String(o.text);
        return { id, text: o.text !== undefined ? String(o.text) : id };
      }
      return { id: String(o), text: String(o) };
    });
  }
  return (labels || []).map((l) => ({ id: String(l), text: String(l) }));
}

// Engine bookkeeping that a record view does not show (besides fields starting with "_").
const BOOKKEEPING = new Set(["options", "accept", "meta", "answer"]);

// The fields a record view shows, in the task's order; on a yes/no question its label is the
// question, not a field.
export function recordFields(task, { binary = false } = {}) {
  return Object.keys(task).filter((key) => key.charAt(0) !== "_" && !BOOKKEEPING.has(key) &&
    !(binary && key === "label"));
}

export function taskMeta(task) {
  return task && task.meta && typeof task.meta === "object" ? task.meta : {};
}

// An audit task is a random check: its answer measures the model, so the model's prediction is
// neither shown nor preselected, whatever the task carries.
export function isAudit(task) {
  return taskMeta(task).source === "audit";
}

export function modelGuess(task) {
  if (isAudit(task)) return null;
  if (Array.isArray(task.accept) && task.accept.length) return String(task.accept[0]);
  return null;
}

// The label selected when a task comes on screen: the model's guess, if it is one of the options.
export function preselected(task, labels) {
  const guess = modelGuess(task);
  if (guess === null) return null;
  return optionsFor(task, labels).some((o) => o.id === guess) ? guess : null;
}

// In binary mode a task with a label is the question "is this LABEL?"; the label, else null. A
// task without one (no model yet, a random check) is asked as multiple choice. In choice mode a
// pool column named "label" is only data.
export function binaryLabel(task, mode, labels) {
  if (mode !== "binary" || !task || typeof task.label !== "string") return null;
  return (labels || []).map(String).indexOf(task.label) === -1 ? null : task.label;
}
