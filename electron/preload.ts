/**
 * The preload (sandboxed, CommonJS): exposes exactly the contract's message pipe on
 * window.qcow2doctor, plus turning a dropped File into an opaque grant id. No Node, no paths
 * handed to the page.
 */
import { contextBridge, ipcRenderer, webUtils, type IpcRendererEvent } from 'electron';
import {
  CONTRACT_VERSION,
  type ClientMessage,
  type PreloadBridge,
  type ServerMessage,
} from '../engine/contract/contract.js';

const IPC_SEND = 'q2d:send';
const IPC_MESSAGE = 'q2d:message';
const IPC_DROP = 'q2d:drop';

const bridge: PreloadBridge = {
  contractVersion: CONTRACT_VERSION,
  send(message: ClientMessage): void {
    ipcRenderer.send(IPC_SEND, message);
  },
  onMessage(listener: (m: ServerMessage) => void): () => void {
    const f = (_e: IpcRendererEvent, m: ServerMessage): void => listener(m);
    ipcRenderer.on(IPC_MESSAGE, f);
    return () => void ipcRenderer.removeListener(IPC_MESSAGE, f);
  },
  async registerDrop(file: unknown): Promise<string> {
    if (!(file instanceof File)) throw new Error('registerDrop expects a dropped File');
    const path = webUtils.getPathForFile(file);
    return (await ipcRenderer.invoke(IPC_DROP, path)) as string;
  },
};

contextBridge.exposeInMainWorld('qcow2doctor', bridge);
