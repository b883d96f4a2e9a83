import QLoRA
print("qlora")
