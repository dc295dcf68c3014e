export * from './iii_browser.js'

export declare const TriggerAction: {
  readonly Void: () => { type: 'void' }
  readonly Enqueue: (options: { queue: string }) => { type: 'enqueue'; queue: string }
}
