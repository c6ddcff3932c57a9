// Electron main process (placeholder while the shell is built).
import { app } from 'electron';

void app.whenReady();
