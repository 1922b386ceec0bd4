// Incremental Server-Sent-Events parser (WHATWG HTML "event stream interpretation").
// The relay forwards upstream bytes untouched and feeds a copy here only to observe events
// (usage, text), so the parser owns no bytes: it returns parsed events and nothing else.

export interface SseEvent {
  /** The `event:` field, or null when absent or empty (the spec's default type "message"). */
  event: string | null;
  /** `data:` lines joined with LF. */
  data: string;
  /** The last event ID seen on the stream so far (it persists across events), or null if none yet. */
  id: string | null;
}

const LINE_END = /\r\n|\r|\n/g;

export class SseParser {
  // ignoreBOM keeps a BOM in the output so one place strips it for byte and string input alike.
  private decoder = new TextDecoder('utf-8', { ignoreBOM: true });
  /** Text of the line not yet terminated. */
  private partial = '';
  /** A chunk ended in CR: a LF at the start of the next chunk belongs to the same line ending. */
  private skipLf = false;
  private started = false;
  /** Data lines, each followed by LF; non-empty once any `data` field was seen (even an empty one). */
  private data = '';
  private eventType = '';
  private lastId: string | null = null;

  /**
   * Feeds the next piece of the stream. Bytes may split anywhere, even inside a UTF-8 character.
   * Don't mix byte and string chunks in one stream: a split character would be lost.
   */
  push(chunk: Uint8Array | string): SseEvent[] {
    const text = typeof chunk === 'string' ? chunk : this.decoder.decode(chunk, { stream: true });
    return this.feed(text);
  }

  /** Ends the stream. Per spec an event without its terminating blank line is discarded. */
  end(): SseEvent[] {
    const events = this.feed(this.decoder.decode());
    this.partial = '';
    this.skipLf = false;
    this.started = false;
    this.data = '';
    this.eventType = '';
    this.lastId = null;
    return events;
  }

  private feed(input: string): SseEvent[] {
    let text = input;
    if (text === '') return [];
    if (!this.started) {
      this.started = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    if (this.skipLf && text.charCodeAt(0) === 0x0a) text = text.slice(1);
    this.skipLf = false;

    const events: SseEvent[] = [];
    let start = 0;
    LINE_END.lastIndex = 0;
    for (let m = LINE_END.exec(text); m !== null; m = LINE_END.exec(text)) {
      const line = this.partial + text.slice(start, m.index);
      this.partial = '';
      start = m.index + m[0].length;
      const event = this.line(line);
      if (event) events.push(event);
    }
    this.partial += text.slice(start);
    this.skipLf = text.endsWith('\r');
    return events;
  }

  private line(line: string): SseEvent | null {
    if (line === '') return this.dispatch();
    if (line.charCodeAt(0) === 0x3a) return null; // ':' starts a comment (keep-alive pings)
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.charCodeAt(0) === 0x20) value = value.slice(1);
    switch (field) {
      case 'data':
        this.data += `${value}\n`;
        break;
      case 'event':
        this.eventType = value;
        break;
      case 'id':
        if (!value.includes('\0')) this.lastId = value;
        break;
      // `retry` and unknown fields only matter to reconnecting clients; the relay never reconnects.
    }
    return null;
  }

  private dispatch(): SseEvent | null {
    const event = this.data ? { event: this.eventType || null, data: this.data.slice(0, -1), id: this.lastId } : null;
    this.data = '';
    this.eventType = '';
    return event;
  }
}

/**
 * One SSE event carrying `data`. A line break inside `data` becomes a new `data:` line, so the
 * payload can never end the event early or inject other fields.
 */
export function encodeSse(data: string): string {
  return `${data
    .split(/\r\n|\r|\n/)
    .map((line) => `data: ${line}`)
    .join('\n')}\n\n`;
}
