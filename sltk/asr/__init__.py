"""ASR: transducer models (LSTM/Conformer encoders, stateless/LSTM prediction networks,
joiner, auxiliary CTC head), losses, training and search."""
