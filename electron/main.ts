// Electron main entry (built to out/main/index.js by electron-vite).
import { startApp } from './app.js';

startApp();
