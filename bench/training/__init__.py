"""The training step and what surrounds it: a cohort of students sharing one stream and one teacher
forward per batch (``cohort``), the teacher itself (``teacher``), the first batch tried on every
student (``first_batch``), learning-rate schedules, timing, CUDA streams, fused and distributed
execution, ``torchrun`` launch and live tracking."""
