// Type-checked by build.sh (tsc --noEmit --strict) against the package's generated
// definitions: every documented call shape must compile. Never run.
import {
  ChannelReader,
  ChannelWriter,
  registerWorker,
  TriggerAction,
  type Channel,
  type FunctionInfo,
  type FunctionsAvailableCallback,
  type IIIConnectionState,
  type IIIError,
  type StreamChannelRef,
  type TriggerInfo,
  type TriggerTypeInfo,
} from './index.js'

export async function usage(): Promise<unknown[]> {
  const iii = registerWorker('ws://127.0.0.1:49134', {
    workerName: 'tab',
    invocationTimeoutMs: 10000,
    reconnectionConfig: { initialDelayMs: 500, maxRetries: 3 },
  })
  registerWorker('ws://127.0.0.1:49134')
  const ref = iii.registerFunction({ id: 'ui::double' }, async (data: { n: number }) => ({ n: data.n * 2 }))
  ref.unregister()
  iii.registerFunction('greet', async (data: { name: string }) => `hi ${data.name}`, { description: 'd' })
  const result = await iii.trigger({ function_id: 'greet', payload: { name: 'x' }, timeoutMs: 5000 })
  await iii.trigger({ function_id: 'log', payload: {}, action: TriggerAction.Void() })
  const channel: Channel = await iii.createChannel()
  await iii.createChannel(16)
  const readerRef: StreamChannelRef = channel.readerRef
  await channel.writer.sendBinary(new Uint8Array([1, 2, 3]))
  await channel.writer.sendMessage('progress')
  await channel.writer.close()
  channel.reader.onBinary((chunk: Uint8Array) => chunk.length)
  channel.reader.onMessage((text: string) => text.length)
  const all: Uint8Array = await channel.reader.readAll()
  await channel.reader.finished()
  const elsewhere = new ChannelReader(iii, readerRef)
  const writer = new ChannelWriter(iii, channel.writerRef)
  writer.abort()
  const trigger = iii.registerTrigger({ type: 'cron', function_id: 'greet', config: { expression: '* * * * *' } })
  trigger.unregister()
  const kind = iii.registerTriggerType(
    { id: 'ticker', description: 'ticks' },
    { async registerTrigger(config) { config.function_id }, async unregisterTrigger() {} },
  )
  kind.registerTrigger('greet', { every: 1 })
  iii.unregisterTriggerType({ id: 'ticker' })
  iii.onConnectionStateChange((state: IIIConnectionState) => state)
  const functions: FunctionInfo[] = await iii.listFunctions()
  const [first] = functions
  const described: string | undefined = first?.description
  const triggers: TriggerInfo[] = await iii.listTriggers()
  await iii.listTriggers(true)
  // The documented `includeInternal?: boolean`, not wasm-bindgen's `boolean | null`.
  // @ts-expect-error
  await iii.listTriggerTypes(null)
  const bound: string | undefined = triggers[0]?.function_id
  const types: TriggerTypeInfo[] = await iii.listTriggerTypes()
  const allTypes = await iii.listTriggerTypes(true)
  const typeDescription: string | undefined = allTypes[0]?.description
  const callback: FunctionsAvailableCallback = (available: FunctionInfo[]) => available.length
  const unsubscribe: () => void = iii.onFunctionsAvailable(callback)
  iii.onFunctionsAvailable((available) => available.map((f) => f.function_id))()
  unsubscribe()
  const id: string | undefined = iii.workerId
  try {
    await iii.shutdown()
  } catch (error) {
    const failure = error as IIIError
    return [failure.kind, failure.code, failure.closeCode]
  }
  return [result, all, elsewhere, id, iii.connectionState, described, bound, types, typeDescription]
}
